"""The nightly allocation (``polku allocate``): score every eligible pair on Dask, solve, store congestion prices.

For each centre: the clients who consented to matching and the centre's catalogue are read from the store; blocks
of clients are scored as Dask tasks with the champion (:func:`models.batch.score_block`, the serving code; the
workers load the model from its MLflow URI or a bundle path, never a pickle of a live model); the allocation is
solved per (client, kind) list with :mod:`models.allocation` in a solver process beside this one (not on the
workers: the one step that needs a whole centre in one place); the prices per item and the run's metadata are
written to the store (``service.storage.prices``) and logged to MLflow as a batch run (counts, totals and times,
never client identifiers). Services pick a new run up at their next request for that centre.
"""

from __future__ import annotations

import logging
import multiprocessing
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from features.records import ClientProfile, Opportunity
from models.allocation import Allocation, AllocationProblem, Solver, solve
from models.batch import (
    ModelSource,
    ScoredPairs,
    dask_client,
    kind_problems,
    merge_allocations,
    quantize_scores,
    score_block,
    score_block_top_k,
)
from models.package import ModelLoadError
from service.settings import Settings
from service.storage import repositories as repo
from service.storage.db import make_engine, make_session_factory, migrate, session_scope
from service.storage.prices import ItemPrice, matching_clients, save_price_run
from service.storage.tables import PriceRunRow

logger = logging.getLogger(__name__)

EXPERIMENT: Final = "polku-allocation"
DEFAULT_BLOCK_CLIENTS: Final = 200
DEFAULT_WINDOW: Final = 16
"""Blocks of one centre on the cluster at a time (:class:`PendingCentre`): enough to keep the workers busy."""
DEFAULT_TOP_K: Final = 50
"""Pairs kept per (client, kind) list before the LP (on the default world: the optimum's value within 0.01 %)."""


@dataclass(frozen=True)
class AllocateOptions:
    """What ``polku allocate`` does.

    Attributes:
        centres: centres to allocate (each gets its own run).
        on: reference date (eligibility, next intake, waiting times).
        solver: ``highs`` (default) or ``sinkhorn``.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``); None starts a LocalCluster.
        workers: workers of the embedded LocalCluster.
        processes: the embedded cluster's workers are processes (start in seconds each, then score in
            parallel: large catalogues); False (default): threads of this process, which start at once and are
            faster for one centre of the default world, where starting processes costs more than scoring.
        bundle: score with a saved model bundle (a directory every worker can read) instead of the registry.
        block_clients: clients per Dask task.
        top_k: pairs kept per (client, kind) list for the allocation, best scores first
            (:func:`models.batch.prune_top_k`, on the workers); None keeps every first-stage candidate.
        memory_limit: per worker of the embedded cluster (Dask's ``"auto"``, ``"2GB"``; None: no limit).
        log_mlflow: log each run to MLflow (experiment ``polku-allocation``).
    """

    centres: tuple[str, ...]
    on: date
    solver: Solver = "highs"
    scheduler: str | None = None
    workers: int = 2
    processes: bool = False
    bundle: Path | None = None
    block_clients: int = DEFAULT_BLOCK_CLIENTS
    top_k: int | None = DEFAULT_TOP_K
    memory_limit: str | None = "auto"
    log_mlflow: bool = True


@dataclass(frozen=True)
class CentreAllocation:
    """The outcome of one centre's run (what the CLI prints and MLflow records)."""

    run_id: str
    centre: str
    n_clients: int
    n_items: int
    n_pairs: int
    priced_items: int
    allocated: int
    total_value: float
    score_seconds: float
    solve_seconds: float
    seconds: float


@dataclass(frozen=True)
class _Model:
    source: ModelSource
    name: str
    version: str | None


def _resolve_model(settings: Settings, bundle: Path | None, ship_to: Path | None) -> _Model:
    """The source workers load: a bundle, or the registry version the alias points at now (pinned).

    With ``ship_to`` (the embedded LocalCluster, whose workers share this machine's disk) the registry model is
    downloaded once here and shipped as a bundle, so workers neither import MLflow nor download it each.
    """
    if bundle is not None:
        from models.packaging import load_local

        meta = load_local(bundle).metadata
        return _Model(ModelSource(str(bundle.resolve())), str(meta.get("name", "bundle")), str(meta.get("version")))
    import mlflow

    from models.packaging import load_polku_model, save_local

    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    try:
        mv = client.get_model_version_by_alias(settings.model_name, settings.model_alias)
    except mlflow.exceptions.MlflowException as exc:
        raise ModelLoadError(f"{settings.model_uri}: no such registered model version") from exc
    uri = f"models:/{settings.model_name}/{mv.version}"
    source = ModelSource(uri, settings.mlflow_tracking_uri)
    if ship_to is not None:
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        source = ModelSource(str(save_local(load_polku_model(uri), ship_to / "bundle")))
    return _Model(source, settings.model_name, str(mv.version))


@dataclass
class PendingCentre:
    """One centre's scoring: the blocks submitted so far, and how to submit the rest (:func:`submit_centre`).

    Only ``window`` blocks are on the cluster at a time; :func:`collect_centre` submits the next block as each
    one comes back. A block's task carries its clients' records, and Dask hands tasks that depend on scattered
    data to the workers at once, so submitting every block up front would put a centre's whole population in
    the workers' memory (1.4 GB more per worker at 100k clients).
    """

    clients: Sequence[ClientProfile]
    opportunities: Sequence[Opportunity]
    starts: list[int]
    futures: list[Any]
    submitted: float
    submit_block: Callable[[int], Any]


def submit_centre(
    client: Any,
    source: ModelSource,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    catalogue_key: str,
    on: date,
    block_clients: int = DEFAULT_BLOCK_CLIENTS,
    top_k: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> PendingCentre:
    """Scatter the catalogue and submit the first ``window`` blocks of clients (one Dask task each); returns at once.

    With ``top_k`` each task keeps only each (client, kind) list's ``top_k`` best pairs
    (:func:`models.batch.prune_top_k`, on the worker), so only those travel back.
    """
    catalogue = client.scatter(list(opportunities), broadcast=True, hash=False)  # fresh keys: no release race
    size = max(block_clients, 1)
    starts = list(range(0, len(clients), size))
    extra: tuple[int, ...] = () if top_k is None else (top_k,)
    task = score_block if top_k is None else score_block_top_k

    def submit_block(i: int) -> Any:
        block = list(clients[starts[i] : starts[i] + size])
        return client.submit(task, source, block, catalogue, catalogue_key, on, *extra, pure=False)

    futures = [submit_block(i) for i in range(min(max(window, 1), len(starts)))]
    return PendingCentre(clients, opportunities, starts, futures, time.perf_counter(), submit_block)


def score_on_dask(
    client: Any,
    source: ModelSource,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    catalogue_key: str,
    on: date,
    block_clients: int = DEFAULT_BLOCK_CLIENTS,
    top_k: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> ScoredPairs:
    """Score ``clients`` x ``opportunities`` as one Dask task per block of clients (:func:`submit_centre`)."""
    pending = submit_centre(client, source, clients, opportunities, catalogue_key, on, block_clients, top_k, window)
    return ScoredPairs.concat(_collect(pending), pending.starts)


def _collect(pending: PendingCentre) -> list[ScoredPairs]:
    """Every block's result in block order: each released on the workers once here, and the next one submitted."""
    import distributed

    as_completed: Any = distributed.as_completed  # untyped
    position = {f.key: i for i, f in enumerate(pending.futures)}
    parts: list[ScoredPairs | None] = [None] * len(pending.starts)
    done = as_completed(pending.futures, with_results=True)
    for future, part in done:
        parts[position.pop(future.key)] = part
        future.release()
        following = len(pending.futures)
        if following < len(pending.starts):
            nxt = pending.submit_block(following)
            pending.futures.append(nxt)
            position[nxt.key] = following
            done.add(nxt)
    return cast(list[ScoredPairs], parts)  # as_completed raises if a block failed: every part is here


def collect_centre(pending: PendingCentre) -> ScoredPairs:
    """Wait for a centre's scoring blocks and join them (scores on the LP's grid, :func:`quantize_scores`)."""
    return quantize_scores(ScoredPairs.concat(_collect(pending), pending.starts))


@dataclass(frozen=True)
class SolvingCentre:
    """One centre's per-kind allocation problems, submitted to the solver process (:func:`start_solving`)."""

    pending: PendingCentre
    pairs: ScoredPairs
    problems: list[tuple[npt.NDArray[np.int64], AllocationProblem]]
    futures: list[Future[Allocation]]
    scored: float


@contextmanager
def solver_pool() -> Iterator[Executor]:
    """One solver process beside this one: the linear programmes run there, not on the Dask workers.

    A centre's problems are the one step that needs the whole centre in one place (HiGHS and the price step held
    3 GB for Helsinki's 4.5M pairs at 100k clients), so they run on the coordinator's machine, in their own
    process (HiGHS and Bellman-Ford would otherwise hold this process's interpreter while it collects the next
    centre), and the workers keep to scoring within their memory limit.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def start_solving(
    pool: Executor, pending: PendingCentre, pairs: ScoredPairs, options: AllocateOptions
) -> SolvingCentre:
    """Submit one allocation problem per kind to the solver process (:func:`models.batch.kind_problems`).

    The kinds share neither agents nor items, so their problems are independent (same optimum and prices as one
    problem) and smaller; they are solved while the workers score the next centre. Returns at once.
    """
    scored = time.perf_counter()
    problems = kind_problems(pairs, len(pending.clients), pending.opportunities, options.on)
    futures = [pool.submit(solve, p, options.solver) for _, p in problems]
    return SolvingCentre(pending, pairs, problems, futures, scored)


def finish_solving(solving: SolvingCentre) -> tuple[CentreAllocation, list[ItemPrice]]:
    """Wait for a centre's solutions, join them and summarise (nothing is written here)."""
    opportunities, problems = solving.pending.opportunities, solving.problems
    solved = [future.result() for future in solving.futures]
    result = merge_allocations([(at, s) for (at, _), s in zip(problems, solved, strict=True)], len(opportunities))
    capacity = np.zeros(len(opportunities))
    for positions, problem in problems:
        capacity[positions] = problem.capacity
    taken = np.bincount(result.assignment[result.assignment >= 0], minlength=len(opportunities))
    items = [
        ItemPrice(o.opportunity_id, float(result.prices[j]), int(capacity[j]), int(taken[j]))
        for j, o in enumerate(opportunities)
    ]
    summary = CentreAllocation(
        run_id=uuid.uuid4().hex,
        centre=opportunities[0].centre if opportunities else "",
        n_clients=len(solving.pending.clients),
        n_items=len(opportunities),
        n_pairs=int(solving.pairs.row.size),
        priced_items=int(result.binding.sum()),
        allocated=int((result.assignment >= 0).sum()),
        total_value=float(result.value),
        score_seconds=solving.scored - solving.pending.submitted,
        solve_seconds=result.seconds,
        seconds=time.perf_counter() - solving.pending.submitted,
    )
    return summary, items


def finish_centre(pending: PendingCentre, options: AllocateOptions) -> tuple[CentreAllocation, list[ItemPrice]]:
    """Collect a centre's scores, solve its allocation in a solver process and summarise (nothing is written)."""
    with solver_pool() as pool:
        return finish_solving(start_solving(pool, pending, collect_centre(pending), options))


def allocate_centre(
    client: Any,
    model: _Model,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    options: AllocateOptions,
    catalogue_key: str,
) -> tuple[CentreAllocation, list[ItemPrice]]:
    """Score, solve and summarise one centre (nothing is written here)."""
    pending = submit_centre(
        client, model.source, clients, opportunities, catalogue_key, options.on, options.block_clients, options.top_k
    )
    return finish_centre(pending, options)


@dataclass(frozen=True)
class CentreInput:
    """One centre to allocate: its consenting clients, its catalogue, and the catalogue's key (name and version)."""

    centre: str
    clients: Sequence[ClientProfile]
    opportunities: Sequence[Opportunity]
    catalogue_key: str


def allocate_centres(
    client: Any,
    source: ModelSource,
    centres: Iterable[CentreInput],
    options: AllocateOptions,
    pool: Executor | None = None,
) -> Iterator[tuple[CentreAllocation, list[ItemPrice]]]:
    """Allocate centre after centre, keeping the workers busy without holding every centre at once.

    Two centres are being scored at most (when one is collected the one after next is queued), and a centre's
    per-kind problems are solved in the solver process (:func:`solver_pool`) while the workers score the next
    centre; a worker holds two catalogues, not all of them (50k items are about 0.9 GB of records), and a window
    of blocks per centre (:class:`PendingCentre`). ``centres`` is read lazily, so the next centre is read from
    the store only when it is submitted. Results come in centre order. ``pool``: the solver process to use
    (default: a new :func:`solver_pool`).
    """
    if pool is None:
        with solver_pool() as own:
            yield from allocate_centres(client, source, centres, options, own)
        return
    inputs = iter(centres)
    queue: deque[tuple[CentreInput, PendingCentre]] = deque()

    def submit_next() -> None:
        nxt = next(inputs, None)
        if nxt is not None:
            pending = submit_centre(
                client,
                source,
                nxt.clients,
                nxt.opportunities,
                nxt.catalogue_key,
                options.on,
                options.block_clients,
                options.top_k,
            )
            queue.append((nxt, pending))

    submit_next()
    submit_next()
    solving: tuple[CentreInput, SolvingCentre] | None = None
    while queue:
        current, pending = queue.popleft()
        pairs = collect_centre(pending)  # its catalogue is released on the workers: queue the one after
        submit_next()
        started = (current, start_solving(pool, pending, pairs, options))
        if solving is not None:  # the previous centre solved while this one was collected
            yield _named(solving[0], finish_solving(solving[1]))
        solving = started
    if solving is not None:
        yield _named(solving[0], finish_solving(solving[1]))


def _named(
    centre: CentreInput, done: tuple[CentreAllocation, list[ItemPrice]]
) -> tuple[CentreAllocation, list[ItemPrice]]:
    return CentreAllocation(**{**asdict(done[0]), "centre": centre.centre}), done[1]


def run_allocation(settings: Settings, options: AllocateOptions) -> list[CentreAllocation]:
    """``polku allocate``: one run per centre, written to the store (and MLflow); returns the summaries."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    factory = make_session_factory(engine)

    def read(centre: str) -> CentreInput | None:
        with session_scope(factory) as session:
            clients = matching_clients(session, centre)
            opportunities = [o for o in repo.all_opportunities(session) if o.centre == centre]
            fingerprint = repo.catalogue_fingerprint(session)
        if not clients or not opportunities:
            logger.info("%s: nothing to allocate (%d clients, %d items)", centre, len(clients), len(opportunities))
            return None
        return CentreInput(centre, clients, opportunities, f"{centre}:{fingerprint[0]}:{fingerprint[1]}")

    out: list[CentreAllocation] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="polku-allocate-") as tmp,
            dask_client(
                options.scheduler, options.workers, processes=options.processes, memory_limit=options.memory_limit
            ) as client,
        ):
            model = _resolve_model(settings, options.bundle, None if options.scheduler else Path(tmp))
            inputs = (found for found in map(read, options.centres) if found is not None)
            for summary, items in allocate_centres(client, model.source, inputs, options):
                mlflow_run = _log_mlflow(settings, model, options, summary) if options.log_mlflow else None
                with session_scope(factory) as session:
                    save_price_run(session, _run_row(model, options, summary, mlflow_run), items)
                    session.commit()
                out.append(summary)
    finally:
        engine.dispose()
    return out


def _run_row(model: _Model, options: AllocateOptions, s: CentreAllocation, mlflow_run: str | None) -> PriceRunRow:
    return PriceRunRow(
        run_id=s.run_id,
        centre=s.centre,
        reference_date=options.on,
        model_name=model.name,
        model_version=model.version,
        solver=options.solver,
        seconds=round(s.seconds, 3),
        population=s.n_clients,
        n_items=s.n_items,
        n_pairs=s.n_pairs,
        total_value=s.total_value,
        mlflow_run_id=mlflow_run,
    )


def _log_mlflow(settings: Settings, model: _Model, options: AllocateOptions, s: CentreAllocation) -> str | None:
    """Log one centre's run (params and counts only; no client identifiers). Failures are logged, not fatal."""
    try:
        import mlflow

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(run_name=f"allocate-{s.centre}-{options.on.isoformat()}") as run:
            mlflow.set_tags({"polku.kind": "batch_allocation", "polku.price_run": s.run_id})
            mlflow.log_params(
                {
                    "centre": s.centre,
                    "reference_date": options.on.isoformat(),
                    "solver": options.solver,
                    "model_name": model.name,
                    "model_version": model.version,
                    "scheduler": "external" if options.scheduler else f"local:{options.workers}",
                    "block_clients": options.block_clients,
                    "top_k": options.top_k,
                }
            )
            mlflow.log_metrics(
                {
                    "allocation/clients": s.n_clients,
                    "allocation/items": s.n_items,
                    "allocation/pairs": s.n_pairs,
                    "allocation/priced_items": s.priced_items,
                    "allocation/allocated": s.allocated,
                    "allocation/total_value": s.total_value,
                    "allocation/score_seconds": s.score_seconds,
                    "allocation/solve_seconds": s.solve_seconds,
                    "allocation/seconds": s.seconds,
                }
            )
            return str(run.info.run_id)
    except Exception as exc:  # noqa: BLE001 - the prices are still written; the log line says why MLflow was skipped
        logger.warning("allocation run not logged to MLflow (%s)", type(exc).__name__)
        return None
