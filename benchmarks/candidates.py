"""Section 3: ``POST /v1/opportunities/{id}/candidates`` with 10k and 100k stored clients."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from benchmarks.data import DataDir, Fixtures
from benchmarks.httpload import build_request, run_load
from benchmarks.report import Section, latency_stats

logger = logging.getLogger(__name__)

TARGET_P99_MS = 100.0


def _targets(fx: Fixtures, n_items: int) -> list[Any]:
    """Vacancies and work trials of the largest centre first (the biggest candidate pools)."""
    catalogue = fx.catalogue(n_items)
    by_centre = Counter(c.centre for c in fx.world.clients)
    ranked = sorted(
        (o for o in catalogue if o.kind in ("vacancy", "work_trial")),
        key=lambda o: (-by_centre[o.centre], o.opportunity_id),
    )
    return ranked[:20] or list(catalogue[:20])


def _inprocess_split(section: Section, fx: Fixtures, dd: DataDir, opp: Any) -> None:
    """Time the two halves of the use case: loading the consenting clients, and ranking them."""
    from benchmarks.suggestions import make_snapshot
    from service.candidates import rank_candidates
    from service.schemas import CandidatesRequest
    from service.storage import repositories as repo
    from service.storage.db import make_engine, make_session_factory

    engine = make_engine(dd.database_url)
    factory = make_session_factory(engine)
    snap = make_snapshot(fx, dd.n_opportunities)
    ref = fx.reference_date()
    try:
        with factory() as session:
            t0 = time.perf_counter()
            clients = repo.shareable_clients(session, opp.centre)
            t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        resp = rank_candidates(opp, clients, CandidatesRequest(k=20, reference_date=ref), snap, ref)
        t_rank = time.perf_counter() - t0
    finally:
        engine.dispose()
    section.add_row(
        mode="in-process split",
        stored_clients=dd.n_clients,
        centre_pool=len(clients),
        eligible=resp.count if resp.count < 20 else None,
        load_clients_ms=1000 * t_load,
        rank_ms=1000 * t_rank,
        per_client_us=1e6 * (t_load + t_rank) / max(len(clients), 1),
    )


def run(section: Section, fx: Fixtures) -> None:
    """Measure the candidates endpoint over HTTP (concurrency 1) per store size, with an in-process split."""
    from service.auth import mint_token

    n_items = fx.sizes.candidate_catalogue or len(fx.world.opportunities)
    fx.model  # noqa: B018
    section.note(
        f"Stores: the world's clients cloned with new ids (70% of clones share with coordinators); catalogue "
        f"{n_items} items. Each request: a vacancy or work trial of the largest centre, k=20, concurrency 1; "
        f"capped at {fx.sizes.candidate_requests} requests or {fx.sizes.candidate_seconds}s per store."
    )
    p99: dict[int, float | None] = {}
    for n_clients in fx.sizes.candidate_stores:
        dd = fx.data_dir(n_items, n_clients)
        targets = _targets(fx, n_items)
        _inprocess_split(section, fx, dd, targets[0])
        settings = dd.settings()
        tokens = {
            c: mint_token(settings, role="coordinator", centre=c, ttl_s=6 * 3600) for c in {o.centre for o in targets}
        }
        ref = fx.reference_date().isoformat()
        requests = [
            build_request(
                "POST",
                f"/v1/opportunities/{o.opportunity_id}/candidates",
                {"k": 20, "reference_date": ref},
                tokens[o.centre],
            )
            for o in targets
        ]
        server = fx.server(dd)
        if n_clients <= 20_000:
            run_load(server.port, requests[:1], n=1, concurrency=1, max_s=120)  # warm-up (skipped when slow)
        res = run_load(
            server.port, requests, n=fx.sizes.candidate_requests, concurrency=1, max_s=fx.sizes.candidate_seconds
        )
        server.requests_served += len(res.latencies) + 1
        stats = latency_stats(res.latencies)
        p99[n_clients] = stats.get("p99_ms")  # type: ignore[assignment]
        section.add_row(
            mode="http",
            stored_clients=n_clients,
            **{k: stats.get(k) for k in ("n", "p50_ms", "p95_ms", "p99_ms")},
            rps=res.rps,
            non_200=sum(v for k, v in res.statuses.items() if k != 200) + res.errors,
            store_prepare_s=dd.seconds,
        )
    for n_clients, value in p99.items():
        section.check(f"candidates p99 @ {n_clients} clients", value, "<=", TARGET_P99_MS, "ms")
