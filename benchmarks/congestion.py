"""Section: seats and congestion (issue 12). The morning simulation, allocation time, serving cost of prices.

- ``morning``: :func:`training.morning.simulate_morning` on the benchmark world with the benchmark model, plain
  ranking against congestion-aware ranking (the issue's four targets).
- ``allocate``: one centre (the largest) scored as Dask tasks on an embedded LocalCluster (threads; the workers
  load a shipped bundle) and solved with HiGHS and, for the comparison, with POT's Sinkhorn.
- ``serving``: in-process ``suggest()`` p50 with and without a price run, plus the cached price lookup on a
  SQLite store (the per-request primary-key read of the centre's price counter).
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import numpy as np

from benchmarks.data import Fixtures
from benchmarks.report import Section

logger = logging.getLogger(__name__)


def _morning(section: Section, fx: Fixtures) -> None:
    from training.morning import MorningConfig, simulate_morning

    smoke = fx.sizes.world_clients < 1000
    result = simulate_morning(fx.world, fx.model, MorningConfig(repeats=1 if smoke else 5))
    for policy in ("plain", "congestion_aware"):
        block = result[policy]
        section.add_row(part="morning", policy=policy, **{k: block[k] for k in sorted(block)})
    change = result["change"]
    section.add_row(part="morning", policy="change", **change)
    section.add_row(part="morning", policy="ceiling: true utility as scores", **result["ceiling"]["change"])
    section.check("first suggestion already full: aware / plain", change["full_first_share_ratio"], "<=", 0.5, "x")
    section.check("congestion@10 drop", change["congestion_at_10_drop"], ">=", 0.30, "")
    section.check("realised utility under capacity: gain", change["utility_gain"], ">=", 0.05, "")
    section.check("mean per-list NDCG@10 loss", change["ndcg_at_10_loss"], "<=", 0.02, "")


def _allocate(section: Section, fx: Fixtures) -> None:
    from models.allocation import solve
    from models.batch import ModelSource, allocation_problem, dask_client
    from models.packaging import save_local
    from service.allocate import score_on_dask
    from training.datasets import cohort_reference_date, time_split

    world = fx.world
    centre = max({o.centre for o in world.opportunities}, key=lambda c: sum(o.centre == c for o in world.opportunities))
    clients = [c for c in world.clients if c.centre == centre and c.consent.matching]
    opps = [o for o in world.opportunities if o.centre == centre]
    on = cohort_reference_date(time_split(world).test_cohort)
    bundle = save_local(fx.model, fx.workdir / "allocate-bundle")
    start = time.perf_counter()
    with dask_client(None, 2, processes=False) as client:
        started = time.perf_counter()
        pairs = score_on_dask(client, ModelSource(str(bundle)), clients, opps, f"{centre}:bench", on)
    scored = time.perf_counter()
    problem = allocation_problem(pairs, len(clients), opps, on)
    exact = solve(problem, "highs")
    total = time.perf_counter() - start
    entropic = solve(problem, "sinkhorn", max_iter=200 if fx.sizes.world_clients < 1000 else 5000)
    section.add_row(
        part="allocate",
        centre=centre,
        clients=len(clients),
        items=len(opps),
        pairs=int(pairs.row.size),
        cluster_start_s=started - start,
        score_s=scored - started,
        highs_s=exact.seconds,
        highs_value=exact.value,
        highs_overfilled=exact.overfilled,
        sinkhorn_s=entropic.seconds,
        sinkhorn_value=entropic.value,
        sinkhorn_overfilled=entropic.overfilled,
        total_s=total,
    )
    section.check("allocate one centre (LocalCluster, score + solve)", total, "<=", 30.0, "s")
    section.note(
        "solver comparison: HiGHS is exact (no seat overfilled, prices exactly 0 where seats are left); Sinkhorn "
        "(reg 0.01) needs the dense matrix and its rounded plan overfills seats"
    )


def _serving(section: Section, fx: Fixtures) -> None:
    from benchmarks.suggestions import make_snapshot, suggestion_bodies
    from service.congestion import CentrePrices, centre_prices
    from service.schemas import PriceRunInfo, SuggestionsRequest
    from service.storage.db import make_engine, make_session_factory, migrate
    from service.suggest import suggest

    snap = make_snapshot(fx, len(fx.world.opportunities))
    rng = np.random.default_rng(5)
    prices = np.where(
        rng.random(len(snap.catalogue.opportunities)) < 0.6, rng.random(len(snap.catalogue.opportunities)), 0
    )
    info = PriceRunInfo(
        run_id="bench", reference_date=fx.reference_date(), created_at="2026-01-01T00:00:00Z", solver="highs"
    )
    priced = CentrePrices((1, ""), snap.catalogue, info, prices)
    n = max(fx.sizes.inprocess_requests, 20)
    bodies = suggestion_bodies(fx, min(n, 100), include_paths=False)
    reqs = [SuggestionsRequest.model_validate(b) for b in bodies]
    today = fx.reference_date()
    for r in reqs:  # warm every request both ways (remedy caches differ by item)
        suggest(r.client, r, snap, today, prices=priced)  # type: ignore[arg-type]
        suggest(r.client, r, snap, today)  # type: ignore[arg-type]
    plain: list[float] = []
    aware: list[float] = []
    diffs: list[float] = []
    for i in range(n):  # paired: the same request with and without prices, back to back, each first half the time
        r = reqs[i % len(reqs)]
        took: dict[bool, float] = {}
        for with_prices in (True, False) if (i + i // len(reqs)) % 2 == 0 else (False, True):
            t0 = time.perf_counter()
            suggest(r.client, r, snap, today, prices=priced if with_prices else None)  # type: ignore[arg-type]
            took[with_prices] = time.perf_counter() - t0
        plain.append(took[False])
        aware.append(took[True])
        diffs.append(took[True] - took[False])
    engine = make_engine(f"sqlite:///{fx.workdir / 'congestion.db'}")
    migrate(engine)
    lookups: list[float] = []
    with make_session_factory(engine)() as session:
        centre_prices(session, snap, "helsinki")
        for _ in range(200):
            t0 = time.perf_counter()
            centre_prices(session, snap, "helsinki")
            lookups.append(time.perf_counter() - t0)
    engine.dispose()
    p50_plain, p50_aware = statistics.median(plain) * 1e3, statistics.median(aware) * 1e3
    lookup = statistics.median(lookups) * 1e3
    paired = statistics.median(diffs) * 1e3
    added = paired + lookup  # the difference of two p50s is noisier than the p50 of paired differences
    section.add_row(
        part="serving",
        requests=n,
        p50_plain_ms=p50_plain,
        p50_aware_ms=p50_aware,
        paired_p50_diff_ms=paired,
        price_lookup_ms=lookup,
        added_ms=added,
    )
    section.check("p50 added by prices (sort + reasons + lookup)", added, "<=", 0.5, "ms")


def run(section: Section, fx: Fixtures) -> None:
    """Morning simulation, allocation time and solver comparison, and the serving cost of prices."""
    parts: dict[str, Any] = {"morning": _morning, "allocate": _allocate, "serving": _serving}
    for name, fn in parts.items():
        start = time.perf_counter()
        fn(section, fx)
        logger.info("congestion/%s: %.1fs", name, time.perf_counter() - start)
