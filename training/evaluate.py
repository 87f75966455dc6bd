"""Offline evaluation: every ranker on the same test clients over their full eligible candidate sets.

Served rankers (LightGBM, points, popularity) go through the same two stages as the service
(``PolkuModel.rank``: first-stage retrieval, then scoring). The oracle (world truth) and random rankers are the
ceiling and the floor and rank the full eligible set directly; two more bounds rank by the truth without its
latent terms: ``ceiling_observable`` (the best use of the observable features) and
``ceiling_observable_quality`` (that plus perfect item quality). Everything is graded by the world's
noise-free ``truth.relevance``; audit attributes (gender, mother tongue) are read here only, to slice the metrics.

Every served ranker's NDCG@k is compared with the points baseline, and with the current champion when it is
among the models, by a paired bootstrap over test clients (:func:`paired_difference`): the report holds the
difference and its 95 % interval, overall and per kind (``vs_points``, ``vs_champion``).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from features.eligibility import EligibilityEvaluator
from features.pairs import EncodedItems
from features.records import KINDS, ClientProfile, Opportunity
from training import metrics as m
from training.config import TrainConfig
from training.datasets import TimeSplit, cohort_reference_date, query_id
from training.oracle import OracleRanker

if TYPE_CHECKING:
    from training.world import World

logger = logging.getLogger(__name__)

ORACLE: Final = "oracle"
RANDOM: Final = "random"
CEILING_OBSERVABLE: Final = "ceiling_observable"
CEILING_QUALITY: Final = "ceiling_observable_quality"
BASELINE: Final = "points"
CHAMPION: Final = "champion"
BOUNDS: Final[tuple[str, ...]] = (ORACLE, CEILING_QUALITY, CEILING_OBSERVABLE, RANDOM)
BOOTSTRAP_SAMPLES: Final = 2000


class ServingModel(Protocol):
    """What evaluation needs from ``models.package.PolkuModel``."""

    def encode_items(self, opportunities: Sequence[Opportunity]) -> EncodedItems:
        """The encoded catalogue."""
        ...  # pragma: no cover

    def encode_client(self, client: ClientProfile) -> Any:
        """One encoded client."""
        ...  # pragma: no cover

    def score(self, enc_client: Any, enc_items: EncodedItems, item_idx: Any, reference_date: date | None = None) -> Any:
        """Scores of every candidate (no first stage)."""
        ...  # pragma: no cover

    def rank(
        self,
        client: ClientProfile,
        enc_items: EncodedItems,
        item_idx: npt.NDArray[np.integer[Any]],
        k: int,
        reference_date: date | None = None,
    ) -> Any:
        """Two-stage ranking of ``item_idx`` for one client; best ``k`` first."""
        ...  # pragma: no cover


def _ranked_positions(result: Any) -> npt.NDArray[np.int64]:
    """Catalogue positions, best first, from whatever ``PolkuModel.rank`` returns."""
    for attr in ("item_idx", "indices", "idx", "positions"):
        if hasattr(result, attr):
            return np.asarray(getattr(result, attr), dtype=np.int64).reshape(-1)
    if isinstance(result, tuple):
        return np.asarray(result[0], dtype=np.int64).reshape(-1)
    return np.asarray(result, dtype=np.int64).reshape(-1)


@dataclass(frozen=True)
class TestQuery:
    """One (client, kind) query of the test set with its full eligible candidate set.

    Attributes:
        qid: ``client|kind``.
        client_pos: position in :attr:`TestSet.clients`.
        kind: opportunity kind.
        item_idx: catalogue positions of the eligible items of this kind.
        relevance: truth relevance (0..4) per eligible item.
    """

    qid: str
    client_pos: int
    kind: str
    item_idx: npt.NDArray[np.int64]
    relevance: npt.NDArray[np.float64]


@dataclass(frozen=True)
class TestSet:
    """The test clients, their eligible candidates and truth grades, built once and reused for every ranker.

    Attributes:
        clients: test client profiles.
        reference_dates: one per client (its cohort date).
        groups: audit attribute -> group label per client (rare labels folded into ``other``).
        opportunities: the catalogue (positions = ``item_idx`` values).
        queries: the (client, kind) queries with at least one eligible item.
        oracle: the truth-based ranker.
    """

    clients: tuple[ClientProfile, ...]
    reference_dates: tuple[date, ...]
    groups: Mapping[str, tuple[str, ...]]
    opportunities: tuple[Opportunity, ...]
    queries: tuple[TestQuery, ...]
    oracle: OracleRanker = field(repr=False)

    @property
    def n_items(self) -> int:
        """Catalogue size N."""
        return len(self.opportunities)

    @property
    def opportunity_ids(self) -> tuple[str, ...]:
        """Catalogue ids in catalogue order."""
        return tuple(o.opportunity_id for o in self.opportunities)


def _fold_rare(labels: Sequence[str], min_size: int) -> tuple[str, ...]:
    counts = Counter(labels)
    return tuple(lab if counts[lab] >= min_size else "other" for lab in labels)


def _progress(iterable: Sequence[Any], desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not sys.stderr.isatty(), leave=False)


def build_test_set(world: World, split: TimeSplit, config: TrainConfig | None = None) -> TestSet:
    """Test queries: every test client × kind with its full eligible set (features.eligibility) and truth grades.

    Args:
        world: the synthetic world (its truth is read here, for grading only).
        split: the time split.
        config: run configuration (``max_test_clients``, ``min_group_size``, ``group_attributes``).

    Returns:
        The test set.
    """
    cfg = config or TrainConfig()
    by_id = {c.client_id: c for c in world.clients}
    ids = list(split.test_client_ids)
    if cfg.max_test_clients is not None and len(ids) > cfg.max_test_clients:
        rng = np.random.default_rng(cfg.seed)
        ids = sorted(rng.choice(np.array(ids), size=cfg.max_test_clients, replace=False).tolist())
    clients = tuple(by_id[i] for i in ids)
    refs = tuple(cohort_reference_date(world.cohort_of[i]) for i in ids)
    audit = {a.client_id: a for a in world.audit}
    groups: dict[str, tuple[str, ...]] = {}
    for attr in cfg.group_attributes:
        raw = [str(getattr(audit[i], attr, None) or "unknown") if i in audit else "unknown" for i in ids]
        # A query per kind per client: fold labels by the number of clients times kinds later seen in metrics.
        groups[attr] = _fold_rare(raw, cfg.min_group_size)
    evaluator = EligibilityEvaluator(world.opportunities)
    opp_ids = evaluator.opportunity_ids
    kinds = np.array([o.kind for o in evaluator.opportunities])
    queries: list[TestQuery] = []
    for pos, (client, ref) in enumerate(_progress(list(zip(clients, refs, strict=True)), "eligibility")):
        mask = evaluator.evaluate(client, ref).mask
        for kind in KINDS:
            idx = np.flatnonzero(mask & (kinds == kind)).astype(np.int64)
            if idx.size == 0:
                continue
            rel = world.truth.relevance([client.client_id] * idx.size, [opp_ids[i] for i in idx])
            queries.append(TestQuery(query_id(client.client_id, kind), pos, kind, idx, np.asarray(rel, np.float64)))
    logger.info("test set: %d clients, %d queries, catalogue %d", len(clients), len(queries), len(opp_ids))
    return TestSet(
        clients=clients,
        reference_dates=refs,
        groups=groups,
        opportunities=tuple(evaluator.opportunities),
        queries=tuple(queries),
        oracle=OracleRanker(world.truth),
    )


@dataclass(frozen=True)
class _Flat:
    """All test rows flattened (one per query × eligible item)."""

    relevance: npt.NDArray[np.float64]
    query_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.int64]
    kinds: npt.NDArray[np.str_]
    offsets: npt.NDArray[np.int64]


def _flatten(test: TestSet) -> _Flat:
    sizes = np.array([q.item_idx.size for q in test.queries], dtype=np.int64)
    return _Flat(
        relevance=np.concatenate([q.relevance for q in test.queries]) if test.queries else np.zeros(0),
        query_ids=np.repeat(np.array([q.qid for q in test.queries], dtype=str), sizes),
        item_ids=np.concatenate([q.item_idx for q in test.queries]) if test.queries else np.zeros(0, np.int64),
        kinds=np.repeat(np.array([q.kind for q in test.queries], dtype=str), sizes),
        offsets=np.r_[0, np.cumsum(sizes)].astype(np.int64),
    )


def _list_scores(ranked: npt.NDArray[np.int64], item_idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Scores that reproduce a served list exactly: n..1 for the ranked items, 0 for the rest of the eligible set."""
    pos = {int(i): r for r, i in enumerate(ranked)}
    n = len(ranked)
    return np.array([float(n - pos[int(i)]) if int(i) in pos else 0.0 for i in item_idx], dtype=np.float64)


@dataclass
class _RankerRun:
    scores: npt.NDArray[np.float64]
    first_stage_recall: list[float] = field(default_factory=list)


def _run_served(
    name: str, model: ServingModel, test: TestSet, enc_items: EncodedItems, k_list: int, k: int
) -> _RankerRun:
    """Rank every query through ``model.rank`` (two stages) and, for first-stage recall, score the full set."""
    scores: list[npt.NDArray[np.float64]] = []
    fs_recall: list[float] = []
    enc_cache: dict[int, Any] = {}
    for q in _progress(test.queries, name):
        client = test.clients[q.client_pos]
        ref = test.reference_dates[q.client_pos]
        enc = enc_cache.get(q.client_pos)
        if enc is None:
            enc = enc_cache[q.client_pos] = model.encode_client(client)
        ranked = _ranked_positions(model.rank(enc, enc_items, q.item_idx, k_list, ref))
        scores.append(_list_scores(ranked, q.item_idx))
        if q.item_idx.size > k:
            full = np.asarray(model.score(enc, enc_items, q.item_idx, ref), dtype=np.float64)
            full_top = q.item_idx[np.argsort(-full, kind="stable")[:k]]
            fs_recall.append(len(set(full_top.tolist()) & set(ranked[:k].tolist())) / k)
        else:
            fs_recall.append(1.0)
    return _RankerRun(np.concatenate(scores) if scores else np.zeros(0), fs_recall)


def _run_oracle(test: TestSet, exclude: Sequence[str] = ()) -> _RankerRun:
    opp_ids = test.opportunity_ids
    oracle = test.oracle if not exclude else OracleRanker(test.oracle.truth, exclude)
    clients = [test.clients[q.client_pos].client_id for q in test.queries for _ in range(q.item_idx.size)]
    items = [opp_ids[i] for q in test.queries for i in q.item_idx]
    return _RankerRun(oracle.score_pairs(clients, items) if clients else np.zeros(0))


def _run_random(test: TestSet, seed: int) -> _RankerRun:
    rng = np.random.default_rng(seed)
    n = sum(q.item_idx.size for q in test.queries)
    return _RankerRun(rng.random(n))


def _ranker_metrics(
    run: _RankerRun, flat: _Flat, test: TestSet, cfg: TrainConfig
) -> tuple[dict[str, Any], npt.NDArray[np.float64]]:
    k = cfg.k
    rl = m.RankedLists.build(flat.relevance, run.scores, flat.query_ids)
    out: dict[str, Any] = {}
    for kk in cfg.eval_k:
        out[f"ndcg_{kk}"] = m.ndcg_at_k(rl, k=kk)
    out[f"map_{k}"] = m.map_at_k(rl, k=k, relevant_from=cfg.relevant_from)
    out[f"recall_{k}"] = m.recall_at_k(rl, k=k, relevant_from=cfg.relevant_from)
    out[f"coverage_{k}"] = m.coverage_at_k(run.scores, flat.query_ids, flat.item_ids, k, n_items=test.n_items)
    out[f"congestion_{k}"] = m.congestion_at_k(run.scores, flat.query_ids, flat.item_ids, k, n_items=test.n_items)
    out[f"gini_{k}"] = m.gini_at_k(run.scores, flat.query_ids, flat.item_ids, k, n_items=test.n_items)
    if run.first_stage_recall:
        out[f"first_stage_recall_{k}"] = float(np.mean(run.first_stage_recall))
    ndcg_q = m.ndcg_per_query(rl, k=k)
    # rl.query_keys are sorted query ids; map each back to its query's client and kind.
    qpos = {q.qid: q for q in test.queries}
    keys = [str(key) for key in rl.query_keys]
    kind_of = [qpos[key].kind for key in keys]
    out[f"ndcg_{k}_by_kind"] = m.mean_by_group(ndcg_q, kind_of)
    _, exposure = m.exposure_per_query(
        (flat.relevance >= cfg.relevant_from).astype(float), run.scores, flat.query_ids, k
    )
    groups_out: dict[str, Any] = {}
    max_gap = 0.0
    for attr, labels in test.groups.items():
        qgroups = [labels[qpos[key].client_pos] for key in keys]
        by_group = m.mean_by_group(ndcg_q, qgroups, min_size=cfg.min_group_size)
        gap = m.group_gap(by_group)
        max_gap = max(max_gap, gap)
        groups_out[attr] = {
            f"ndcg_{k}": by_group,
            f"ndcg_{k}_gap": gap,
            f"exposure_{k}": m.mean_by_group(exposure, qgroups, min_size=cfg.min_group_size),
        }
    out["groups"] = groups_out
    out[f"max_group_gap_ndcg_{k}"] = max_gap
    return out, ndcg_q


@dataclass(frozen=True)
class Evaluation:
    """A report plus what paired comparisons need: NDCG@k per query of every ranker, and each query's client.

    Attributes:
        report: see :func:`evaluate_models`.
        per_query: ranker name -> NDCG@k per query (queries in sorted id order, NaN without relevant items).
        query_clients: client position (in :attr:`TestSet.clients`) per query.
        query_kinds: kind per query.
    """

    report: dict[str, Any]
    per_query: dict[str, npt.NDArray[np.float64]]
    query_clients: npt.NDArray[np.int64]
    query_kinds: npt.NDArray[np.str_]

    def compare(self, a: str, b: str, *, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict[str, Any]:
        """Paired bootstrap of NDCG@k(a) - NDCG@k(b) over clients (see :func:`paired_difference`)."""
        return paired_difference(
            self.per_query[a], self.per_query[b], self.query_clients, self.query_kinds, samples=samples, seed=seed
        )


def paired_difference(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    clients: npt.ArrayLike,
    kinds: npt.ArrayLike,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Mean per-query difference ``a - b`` with a percentile bootstrap interval, resampling clients.

    Queries of one client are resampled together (a client's queries are not independent). Queries where
    either value is NaN (no relevant item) are left out.

    Args:
        a: per-query metric of the first ranker.
        b: per-query metric of the second, same queries.
        clients: client of each query.
        kinds: kind of each query.
        samples: bootstrap replicates.
        seed: replicate seed.
        level: interval coverage.

    Returns:
        ``{"all": {"diff", "lo", "hi", "n_queries"}, "<kind>": {...}}``; values in [-1, 1].
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    ok = np.isfinite(d)
    codes = np.unique(np.asarray(clients), return_inverse=True)[1].reshape(-1)
    n_clients = int(codes.max()) + 1 if codes.size else 0
    kind_arr = np.asarray(kinds).astype(str)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_clients, np.full(n_clients, 1.0 / max(n_clients, 1)), size=samples).astype(np.float64)
    tail = (1.0 - level) / 2.0
    out: dict[str, Any] = {}
    for name in ("all", *KINDS):
        m = ok if name == "all" else ok & (kind_arr == name)
        if not m.any():
            continue
        total = np.bincount(codes[m], weights=d[m], minlength=n_clients)
        n = np.bincount(codes[m], minlength=n_clients).astype(np.float64)
        reps = (counts @ total) / np.maximum(counts @ n, 1.0)
        out[name] = {
            "diff": float(total.sum() / n.sum()),
            "lo": float(np.quantile(reps, tail)),
            "hi": float(np.quantile(reps, 1.0 - tail)),
            "n_queries": int(m.sum()),
        }
    return out


def evaluate(
    models: Mapping[str, ServingModel],
    test: TestSet,
    config: TrainConfig | None = None,
    *,
    include_bounds: bool = True,
    baseline: str = BASELINE,
    references: Sequence[str] = (CHAMPION,),
) -> Evaluation:
    """Evaluate served models (two stages) and, optionally, the truth-based bounds and random on one test set.

    Args:
        models: ranker name -> packaged model (``PolkuModel``), e.g. lightgbm, points, popularity.
        test: the test set from :func:`build_test_set`.
        config: run configuration (cut-offs, group settings, seed, bootstrap samples).
        include_bounds: also evaluate the oracle, the two observable ceilings and a random ranking.
        baseline: served ranker every other served ranker is compared with (``vs_<baseline>``), when present.
        references: further served rankers to compare with (``vs_<name>``) when present, e.g. the champion.

    Returns:
        The report and the per-query NDCG@k of every ranker.
    """
    cfg = config or TrainConfig()
    flat = _flatten(test)
    k_list = max(cfg.eval_k)
    rankers: dict[str, Any] = {}
    per_query: dict[str, npt.NDArray[np.float64]] = {}
    catalogue = test.opportunities
    runs: dict[str, _RankerRun] = {}
    for name, model in models.items():
        # A featurizer caches the encoded catalogue, so models sharing one encode it once.
        runs[name] = _run_served(name, model, test, model.encode_items(catalogue), k_list, cfg.k)
    if include_bounds:
        runs[ORACLE] = _run_oracle(test)
        runs[CEILING_QUALITY] = _run_oracle(test, ("affinity",))
        runs[CEILING_OBSERVABLE] = _run_oracle(test, ("quality", "affinity"))
        runs[RANDOM] = _run_random(test, cfg.seed)
    for name, run in runs.items():
        rankers[name], per_query[name] = _ranker_metrics(run, flat, test, cfg)
    rl_keys = np.unique(flat.query_ids)
    by_qid = {q.qid: q for q in test.queries}
    query_clients = np.array([by_qid[str(q)].client_pos for q in rl_keys], dtype=np.int64)
    query_kinds = np.array([by_qid[str(q)].kind for q in rl_keys], dtype=str)
    evaluation = Evaluation({}, per_query, query_clients, query_kinds)
    for reference in (baseline, *references):
        if reference not in models:
            continue
        for name in models:
            if name != reference:
                rankers[name][f"vs_{reference}"] = evaluation.compare(
                    name, reference, samples=cfg.bootstrap_samples, seed=cfg.seed
                )
    report = {
        "k": cfg.k,
        "eval_k": list(cfg.eval_k),
        "n_queries": len(test.queries),
        "n_clients": len(test.clients),
        "n_items": test.n_items,
        "baseline": baseline if baseline in models else None,
        "rankers": rankers,
    }
    return Evaluation(report, per_query, query_clients, query_kinds)


def evaluate_models(
    models: Mapping[str, ServingModel],
    test: TestSet,
    config: TrainConfig | None = None,
    *,
    include_bounds: bool = True,
) -> dict[str, Any]:
    """:func:`evaluate`, the report only.

    Returns:
        Report dict: ``{"k", "n_queries", "n_clients", "n_items", "baseline", "rankers": {name: metrics}}``;
        served rankers carry ``vs_points`` (paired bootstrap difference to the points baseline) when it is among
        ``models``.
    """
    return evaluate(models, test, config, include_bounds=include_bounds).report


METRIC_COLUMNS: Final[tuple[str, ...]] = m.RANKER_METRIC_COLUMNS


def flat_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Every numeric metric of a report as ``<ranker>.<metric>`` (groups as ``<ranker>.<attr>.<group>.<metric>``).

    Args:
        report: output of :func:`evaluate_models`.

    Returns:
        Flat metric name -> finite value (NaN metrics are left out), ready for ``mlflow.log_metrics``.
    """
    out: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, int | float) and np.isfinite(value):
            out[key.replace(" ", "_")] = float(value)

    for ranker, values in report["rankers"].items():
        for name, value in values.items():
            if name == "groups":
                for attr, block in value.items():
                    for metric, per in block.items():
                        if isinstance(per, Mapping):
                            for group, v in per.items():
                                put(f"{ranker}.{attr}.{group}.{metric}", v)
                        else:
                            put(f"{ranker}.{attr}.{metric}", per)
            elif isinstance(value, Mapping):
                for sub, v in value.items():
                    if isinstance(v, Mapping):  # e.g. vs_points.<kind>.{diff, lo, hi}
                        for leaf, x in v.items():
                            put(f"{ranker}.{name}.{sub}.{leaf}", x)
                    else:
                        put(f"{ranker}.{name}.{sub}", v)
            else:
                put(f"{ranker}.{name}", value)
    return out


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and np.isfinite(value) else "–"


def _interval(block: Mapping[str, Any] | None) -> str:
    if not block:
        return "–"
    return f"{block['diff']:+.3f} [{block['lo']:+.3f}, {block['hi']:+.3f}]"


def kind_table(report: Mapping[str, Any]) -> str:
    """NDCG@k overall and per kind for every ranker, with each served ranker's difference to the baseline.

    Args:
        report: output of :func:`evaluate_models`.

    Returns:
        Markdown table; intervals are paired client-bootstrap 95 % intervals.
    """
    k = int(report["k"])
    base = report.get("baseline")
    head = ["ranker", "all", *KINDS]
    if base:
        head += [f"Δ vs {base} (all)", *(f"Δ vs {base} ({kind})" for kind in KINDS)]
    has_champion = CHAMPION in report["rankers"]
    if has_champion:
        head.append(f"Δ vs {CHAMPION} (all)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, values in report["rankers"].items():
        by_kind = values.get(f"ndcg_{k}_by_kind", {})
        row = [name, _fmt(values.get(f"ndcg_{k}")), *(_fmt(by_kind.get(kind)) for kind in KINDS)]
        if base:
            vs = values.get(f"vs_{base}") or {}
            row += [_interval(vs.get("all")), *(_interval(vs.get(kind)) for kind in KINDS)]
        if has_champion:
            row.append(_interval((values.get(f"vs_{CHAMPION}") or {}).get("all")))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(report: Mapping[str, Any]) -> str:
    """The rankers side by side as Markdown: NDCG@k per kind with intervals, then every metric and group NDCG.

    Args:
        report: output of :func:`evaluate_models`.

    Returns:
        Markdown text.
    """
    k = int(report["k"])
    cols = [c.replace("_10", f"_{k}") for c in METRIC_COLUMNS]
    rankers: Mapping[str, Any] = report["rankers"]
    oracle_ndcg = rankers.get(ORACLE, {}).get(f"ndcg_{k}")
    lines = [f"NDCG@{k} by kind (95 % intervals: paired bootstrap over test clients)", "", kind_table(report)]
    head = ["ranker", *cols, f"ndcg_{k}/oracle"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, values in rankers.items():
        rel = values.get(f"ndcg_{k}", float("nan")) / oracle_ndcg if oracle_ndcg else float("nan")
        lines.append("| " + " | ".join([name, *(_fmt(values.get(c)) for c in cols), _fmt(rel)]) + " |")
    lines.append("")
    lines.append(
        f"{report['n_queries']} queries (client × kind), {report['n_clients']} test clients, "
        f"catalogue {report['n_items']}. {CEILING_OBSERVABLE}: ranking by the truth without item quality and "
        f"client × item affinity (the best use of observable features); {CEILING_QUALITY}: the same plus perfect "
        "item quality."
    )
    for name, values in rankers.items():
        for attr, block in values.get("groups", {}).items():
            per = block.get(f"ndcg_{k}", {})
            parts = ", ".join(f"{g} {_fmt(v)}" for g, v in sorted(per.items()))
            lines.append(f"- {name} NDCG@{k} by {attr}: {parts} (gap {_fmt(block.get(f'ndcg_{k}_gap'))})")
    return "\n".join(lines) + "\n"
