"""Section 6: service start-up time to ready, RSS after start and after many suggestion requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.data import Fixtures
from benchmarks.httpload import rss_mb, run_load
from benchmarks.report import Section, latency_stats
from benchmarks.suggestions import http_requests_for

TARGET_RSS_MB = 1024.0
IMPORT_PROBE = "import time; t = time.perf_counter(); import service.app; print(time.perf_counter() - t)"


def run(section: Section, fx: Fixtures) -> None:
    """Start (or reuse) the server on the largest catalogue, send ``rss_requests`` suggestions, read RSS."""
    n_items = fx.sizes.startup_catalogue
    dd = fx.data_dir(n_items, fx.sizes.store_clients)
    server = fx.server(dd)
    probe = subprocess.run(  # noqa: S603
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, cwd=Path.cwd(), check=False
    )
    import_s = float(probe.stdout.strip()) if probe.returncode == 0 else None
    start_rss = server.rss_at_start
    section.add_row(
        what="start",
        items=n_items,
        startup_s=server.started_s,
        import_service_app_s=import_s,
        rss_mb=start_rss.get("rss_mb"),
        peak_rss_mb=start_rss.get("peak_rss_mb"),
    )
    requests = http_requests_for(fx)
    res = run_load(server.port, requests, n=fx.sizes.rss_requests, concurrency=8, max_s=fx.sizes.rss_seconds)
    server.requests_served += len(res.latencies)
    after = rss_mb(server.proc.pid)
    stats = latency_stats(res.latencies)
    section.add_row(
        what=f"after {len(res.latencies)} requests (c=8)",
        items=n_items,
        total_requests_served=server.requests_served,
        rss_mb=after.get("rss_mb"),
        peak_rss_mb=after.get("peak_rss_mb"),
        p50_ms=stats.get("p50_ms"),
        p99_ms=stats.get("p99_ms"),
        rps=res.rps,
        non_200=sum(v for k, v in res.statuses.items() if k != 200) + res.errors,
    )
    section.note(
        "start-up = process start to the first 200 from /readyz (model from the local cache, registry off; "
        "includes migrations, loading and encoding the catalogue). The server may have served earlier sections; "
        "total_requests_served counts them."
    )
    if len(res.latencies) < fx.sizes.rss_requests:
        section.note(f"only {len(res.latencies)} of {fx.sizes.rss_requests} requests within {fx.sizes.rss_seconds}s")
    section.check("RSS after start", start_rss.get("rss_mb"), "<=", TARGET_RSS_MB, "MB")
    section.check("peak RSS after the requests", after.get("peak_rss_mb"), "<=", TARGET_RSS_MB, "MB")
