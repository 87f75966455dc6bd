"""Batch scoring of every eligible (client, item) pair, the same way the service scores one client.

Used by the nightly allocation (``polku allocate``, one block of clients per Dask task) and by the training-side
morning simulation. A block is scored with :meth:`models.package.PolkuModel.score_groups`: eligibility by
:class:`features.eligibility.EligibilityEvaluator`, one candidate list per kind, the first stage, then the ranker,
exactly as ``POST /v1/suggestions`` does before its final sort.

Dask workers never receive a pickled model. They get a :class:`ModelSource` (an MLflow model URI or the path of
a saved bundle) and load the model themselves, once per worker process (:func:`load_source`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.eligibility import EligibilityEvaluator
from features.pairs import EncodedItems
from features.records import KINDS, ClientProfile, Opportunity
from models.allocation import Allocation, AllocationProblem, capacity_of
from models.package import PREDICTION_EXTRAS, PolkuModel


@dataclass(frozen=True)
class ModelSource:
    """Where a worker loads the model from: an MLflow URI (``models:/name/3``) or a bundle directory.

    Attributes:
        uri: ``models:/...``, ``runs:/...`` or any MLflow model URI; or a local bundle path (``models.packaging``).
        tracking_uri: the MLflow tracking URI for ``models:/`` URIs (None: MLflow's own default).
    """

    uri: str
    tracking_uri: str | None = None


@functools.lru_cache(maxsize=2)
def load_source(source: ModelSource) -> PolkuModel:
    """Load (once per process) the model a source names."""
    from models.packaging import load_local, load_polku_model

    if ":/" not in source.uri and Path(source.uri).is_dir():
        return load_local(source.uri)
    if source.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(source.tracking_uri)
    return load_polku_model(source.uri)


@dataclass(frozen=True)
class ScoredPairs:
    """Scored eligible pairs of a block of clients (rows index the block's clients, items the catalogue)."""

    row: npt.NDArray[np.int64]
    item: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]

    @classmethod
    def concat(cls, parts: Sequence[ScoredPairs], offsets: Sequence[int]) -> ScoredPairs:
        """Join blocks, shifting each block's rows by its offset."""
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
        return cls(
            np.concatenate([p.row + off for p, off in zip(parts, offsets, strict=True)]),
            np.concatenate([p.item for p in parts]),
            np.concatenate([p.score for p in parts]),
        )


def score_clients(
    model: PolkuModel,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    on: date,
    *,
    evaluator: EligibilityEvaluator | None = None,
    items: EncodedItems | None = None,
) -> ScoredPairs:
    """Scores of every eligible pair of ``clients`` x ``opportunities`` at day ``on`` (serving's candidate rules)."""
    evaluator = evaluator or EligibilityEvaluator(opportunities)
    items = items if items is not None else model.encode_items(opportunities)
    kind_of = kind_index(opportunities)
    rows: list[npt.NDArray[np.int64]] = []
    idx: list[npt.NDArray[np.int64]] = []
    scores: list[npt.NDArray[np.float64]] = []
    for r, client in enumerate(clients):
        eligible = evaluator.evaluate(client, on).eligible_indices
        groups = [eligible[kind_of[eligible] == k] for k in range(len(KINDS))]
        for positions, values in model.score_groups(model.encode_client(client), items, groups, on):
            rows.append(np.full(positions.size, r, dtype=np.int64))
            idx.append(positions.astype(np.int64))
            scores.append(np.asarray(values, dtype=np.float64))
    if not rows:
        return ScoredPairs.concat([], [])
    return ScoredPairs(np.concatenate(rows), np.concatenate(idx), np.concatenate(scores))


PREPARED_CATALOGUES: Final = 2
"""Catalogues a worker keeps prepared: the one being scored and the next (each holds its records alive)."""

_PREPARED: dict[tuple[ModelSource, str], tuple[EligibilityEvaluator, EncodedItems]] = {}
"""Per worker process: the eligibility index and encoded catalogue of the last catalogues seen (by key)."""

_KIND_OF: dict[str, npt.NDArray[np.int64]] = {}
"""Per worker process: the kind index of the last catalogues seen (by key)."""


def score_block(
    source: ModelSource,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    catalogue_key: str,
    on: date,
) -> ScoredPairs:
    """A Dask task: load the model (once per worker), prepare the catalogue (once per key), score a client block.

    ``opportunities`` is normally a scattered list, so each worker holds the catalogue once; ``catalogue_key``
    names it (e.g. centre and fingerprint) so that its eligibility index and encoding are built once per worker.
    """
    model = load_source(source)
    key = (source, catalogue_key)
    prepared = _PREPARED.get(key)
    if prepared is None:
        if len(_PREPARED) >= PREPARED_CATALOGUES:
            _PREPARED.clear()
        prepared = (EligibilityEvaluator(opportunities), model.encode_items(opportunities))
        _PREPARED[key] = prepared
    evaluator, items = prepared
    return score_clients(model, clients, opportunities, on, evaluator=evaluator, items=items)


def kind_index(opportunities: Sequence[Opportunity]) -> npt.NDArray[np.int64]:
    """The position in :data:`features.records.KINDS` of each item's kind (the list a pair belongs to)."""
    return np.fromiter((KINDS.index(o.kind) for o in opportunities), dtype=np.int64, count=len(opportunities))


def prune_top_k(pairs: ScoredPairs, kind_of: npt.ArrayLike, k: int) -> ScoredPairs:
    """Each (client, kind) list's ``k`` best-scored pairs, in their original order (ties: lower item first).

    The allocation gives each list at most one item and the service shows a list's top 10, so pairs far down a
    list matter only when every better one is priced out; dropping them keeps the linear programme at
    ``clients x kinds x k`` pairs instead of every first-stage candidate (``k`` >= the slate size).

    Args:
        pairs: scored pairs (any per-pair arrays it carries are kept alongside).
        kind_of: kind index per catalogue item (:func:`kind_index`).
        k: pairs kept per list (>= 1).
    """
    if k < 1:
        raise ValueError("k: keep at least one pair per list")
    kinds = np.asarray(kind_of, dtype=np.int64)
    lists = pairs.row * len(KINDS) + kinds[pairs.item]
    order = np.lexsort((pairs.item, -pairs.score, lists))
    ranked = lists[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]) if ranked.size else np.zeros(0, np.int64)
    rank = np.arange(ranked.size) - np.repeat(starts, np.diff(np.r_[starts, ranked.size]))
    keep = np.sort(order[rank < k])
    return pairs if keep.size == pairs.row.size else _take(pairs, keep)


def score_block_top_k(
    source: ModelSource,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    catalogue_key: str,
    on: date,
    k: int,
) -> ScoredPairs:
    """A Dask task: :func:`score_block`, then :func:`prune_top_k` on the worker (only the kept pairs travel)."""
    pairs = score_block(source, clients, opportunities, catalogue_key, on)
    kinds = _KIND_OF.get(catalogue_key)
    if kinds is None or kinds.size != len(opportunities):
        if len(_KIND_OF) >= PREPARED_CATALOGUES:
            _KIND_OF.clear()
        kinds = _KIND_OF[catalogue_key] = kind_index(opportunities)
    return prune_top_k(pairs, kinds, k)


SCORE_STEP: Final = 2.0**-20
"""Grid of the scores the allocation solves on (:func:`quantize_scores`): about 1e-6, a power of two."""


def quantize_scores(pairs: ScoredPairs, step: float = SCORE_STEP) -> ScoredPairs:
    """Scores rounded to multiples of ``step`` (a power of two), for the linear programme.

    HiGHS stops within its optimality tolerance (1e-7): on hundreds of thousands of nearly tied pairs its vertex
    can miss the optimum by less than that, and the exact price step of :func:`models.allocation.solve_lp` then
    finds a negative cycle and fails. On a binary grid coarser than the tolerance an improving exchange gains at
    least one step, so the vertex is exactly optimal, and sums of grid values are exact in floating point.
    """
    return replace(pairs, score=np.round(pairs.score / step) * step)


def split_by_kind(pairs: ScoredPairs, kind_of: npt.ArrayLike) -> list[ScoredPairs]:
    """The pairs of each kind, in :data:`features.records.KINDS` order (rows and items keep their numbering)."""
    kinds = np.asarray(kind_of, dtype=np.int64)[pairs.item]
    return [_take(pairs, np.flatnonzero(kinds == k)) for k in range(len(KINDS))]


def kind_problems(
    pairs: ScoredPairs, n_clients: int, opportunities: Sequence[Opportunity], on: date
) -> list[tuple[npt.NDArray[np.int64], AllocationProblem]]:
    """One allocation problem per kind, over that kind's items only: (catalogue positions of its items, problem).

    Every item has one kind and every agent is one (client, kind) list, so :func:`allocation_problem` falls
    apart into independent problems with the same optimum and prices (:func:`merge_allocations` joins them).
    Each is smaller, and its price step runs over its own items only (a graph of a third of the nodes).
    """
    kinds = kind_index(opportunities)
    local = np.zeros(len(opportunities), dtype=np.int64)
    out = []
    for k, part in enumerate(split_by_kind(pairs, kinds)):
        items = np.flatnonzero(kinds == k)
        local[items] = np.arange(items.size)
        sub = replace(part, item=local[part.item])
        out.append((items, allocation_problem(sub, n_clients, [opportunities[int(i)] for i in items], on)))
    return out


def merge_allocations(parts: Sequence[tuple[npt.NDArray[np.int64], Allocation]], n_items: int) -> Allocation:
    """One allocation from the solutions of :func:`kind_problems` (item numbers back to catalogue positions)."""
    if not parts:
        raise ValueError("merge_allocations: nothing to merge")
    prices = np.zeros(n_items, dtype=np.float64)
    assignment = np.full(parts[0][1].assignment.size, -1, dtype=np.int64)
    for items, part in parts:
        prices[items] = part.prices
        chosen = part.assignment >= 0
        assignment[chosen] = items[part.assignment[chosen]]
    return Allocation(
        prices=prices,
        assignment=assignment,
        value=float(sum(p.value for _, p in parts)),
        overfilled=sum(p.overfilled for _, p in parts),
        solver=parts[0][1].solver,
        seconds=float(sum(p.seconds for _, p in parts)),
    )


def _take(pairs: ScoredPairs, index: npt.NDArray[np.int64]) -> ScoredPairs:
    """The pairs at ``index`` (every per-pair array the dataclass carries)."""
    return type(pairs)(**{f.name: getattr(pairs, f.name)[index] for f in fields(pairs)})


def worker_peak_rss() -> int:
    """Peak resident memory of this process in bytes (``VmHWM``; 0 where ``/proc`` is not readable)."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def allocation_problem(
    pairs: ScoredPairs, n_clients: int, opportunities: Sequence[Opportunity], on: date
) -> AllocationProblem:
    """The allocation of scored pairs: one agent per (client, kind), agent ``row * 3 + kind``.

    A client can take one item of each kind, as each kind is its own suggestion list; seats are the next
    intake's (:func:`models.allocation.capacity_of`).
    """
    agent = pairs.row * len(KINDS) + kind_index(opportunities)[pairs.item]
    capacity = [capacity_of(o, on) for o in opportunities]
    return AllocationProblem.build(agent, pairs.item, pairs.score, capacity, n_clients * len(KINDS))


def score_records(
    model: PolkuModel,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    client_idx: npt.ArrayLike,
    opp_idx: npt.ArrayLike,
    reference_dates: Sequence[date | None] | None = None,
) -> npt.NDArray[np.float64]:
    """Scores of pairs ``(clients[client_idx[i]], opportunities[opp_idx[i]])``, in pair order.

    Uses the serving path (one encoded catalogue, one encoded client at a time), so batch scoring and
    the service give identical numbers.
    """
    return predict_records(model, clients, opportunities, client_idx, opp_idx, reference_dates)["score"]


def predict_records(
    model: PolkuModel,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    client_idx: npt.ArrayLike,
    opp_idx: npt.ArrayLike,
    reference_dates: Sequence[date | None] | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """:func:`score_records` plus ``p_accept`` and ``expected_outcome`` per pair (NaN without outcome models)."""
    ci = np.asarray(client_idx, dtype=np.int64).reshape(-1)
    oi = np.asarray(opp_idx, dtype=np.int64).reshape(-1)
    if ci.shape != oi.shape:
        raise ValueError("client_idx and opp_idx differ in length")
    out = np.zeros(ci.size, dtype=np.float64)
    extra = {key: np.full(ci.size, np.nan) for key in PREDICTION_EXTRAS}
    if ci.size == 0:
        return {"score": out, **extra}
    items = model.encode_items(opportunities)
    order = np.argsort(ci, kind="stable")
    sorted_ci = ci[order]
    starts = np.flatnonzero(np.r_[True, sorted_ci[1:] != sorted_ci[:-1]])
    ends = np.r_[starts[1:], sorted_ci.size]
    for start, end in zip(starts, ends, strict=True):
        rows = order[start:end]
        c = int(sorted_ci[start])
        ref = reference_dates[c] if reference_dates is not None else None
        X = model.features(model.encode_client(clients[c]), items, oi[rows], ref)
        out[rows] = model.score_rows(X)
        outcomes = model.outcome_rows(X)
        if outcomes is not None:
            for key in PREDICTION_EXTRAS:
                extra[key][rows] = outcomes[key]
    return {"score": out, **extra}


@contextmanager
def dask_client(
    scheduler: str | None, workers: int, *, processes: bool = True, memory_limit: str | int | None = "auto"
) -> Iterator[Any]:
    """A Dask client on an existing scheduler, or on an embedded LocalCluster (closed afterwards).

    ``memory_limit`` is each embedded worker's limit (Dask's: ``"auto"`` shares the machine's memory, ``"2GB"``,
    bytes, or 0/None for none); past it the nanny restarts the worker.
    """
    import distributed

    # distributed's constructors are untyped; the client is used through Any anyway.
    Client: Any = distributed.Client  # noqa: N806
    LocalCluster: Any = distributed.LocalCluster  # noqa: N806
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            memory_limit=memory_limit or 0,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
