"""Scale of the nightly allocation (issue 12): every centre of a 100k-client x 50k-item world on Dask processes.

``python -m benchmarks.allocate_scale --clients 100000 --opportunities 50000 --workers 1,2`` runs the batch of
``polku allocate --centre all --processes`` once per worker count, on an embedded LocalCluster of worker
processes (one thread each), and writes a JSON report under ``benchmarks/results/``.

What runs is the code of ``polku allocate`` without the store: the consenting clients and the catalogue of each
centre come from a saved world's files (``--world``, or one generated at the requested size under
``$POLKU_DATA_DIR/scale-worlds``); :func:`service.allocate.allocate_centres` scores centre after centre, the next
always queued (the workers load a saved model bundle: the serving path, first stage then ranker; each block keeps
each list's ``--top-k`` best pairs), collects a centre and solves its three per-kind LPs (HiGHS) as Dask tasks.
``--clients`` smaller than the world takes its first clients (10k and 25k clients against the same catalogue).

Measured: the batch's wall time (cluster start, then every centre scored and solved), pairs, the workers'
compute seconds per task function (Dask's task stream: scoring blocks vs LP solves), and each worker's peak
resident memory (``VmHWM`` of the worker process, read at the end).

Targets (issue 12): at 100k clients x 50k items the batch takes <= 15 minutes with 2 workers on the 2-core
machine, 2 workers are >= 1.7x faster than 1, and no worker exceeds 2 GB.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np

logger = logging.getLogger(__name__)

TARGET_SECONDS: Final = 15 * 60.0
TARGET_SPEEDUP: Final = 1.7
TARGET_WORKER_BYTES: Final = 2 * 1024**3
TARGET_SIZE: Final = (100_000, 50_000)
RESULTS: Final = Path(__file__).resolve().parent / "results"


def world_path(clients: int, opportunities: int, seed: int) -> Path:
    """Where a generated scale world is kept (under the data directory)."""
    from features.paths import data_dir

    return data_dir() / "scale-worlds" / f"{clients}x{opportunities}-s{seed}"


def ensure_world(clients: int, opportunities: int, seed: int = 7) -> Path:
    """A saved world of that size (generated once, ``polku world --clients N --opportunities M``)."""
    from training.world import generate_world

    path = world_path(clients, opportunities, seed)
    if not (path / "manifest.json").exists():
        logger.info("generating a %d x %d world in %s", clients, opportunities, path)
        generate_world(n_clients=clients, seed=seed, n_opportunities=opportunities).save(path)
    return path


def ensure_bundle(path: Path, world_clients: int = 3000) -> Path:
    """A model bundle: the benchmark model trained on a default-size world, saved once."""
    from benchmarks.data import train_bench_model
    from models.packaging import save_local
    from training.world import generate_world

    if not (path / "metadata.json").exists():
        model, info = train_bench_model(generate_world(n_clients=world_clients, seed=7))
        logger.info("bundle model: %s", info)
        save_local(model, path)
    return path


def read_population(world: Path, n_clients: int | None) -> tuple[list[Any], list[Any]]:
    """The first ``n_clients`` clients (all if None) and the catalogue of a saved world (records only)."""
    import pandas as pd

    from features.records import ClientProfile, Opportunity

    profiles = pd.read_parquet(world / "clients.parquet", columns=["profile"])["profile"]
    if n_clients is not None:
        profiles = profiles.iloc[:n_clients]
    clients = [ClientProfile.model_validate_json(s) for s in profiles]
    records = pd.read_parquet(world / "opportunities.parquet", columns=["opportunity"])["opportunity"]
    return clients, [Opportunity.model_validate_json(s) for s in records]


def run_batch(
    clients: Sequence[Any],
    opportunities: Sequence[Any],
    bundle: Path,
    on: date,
    *,
    workers: int,
    block_clients: int,
    top_k: int | None,
    memory_limit: str | None,
) -> dict[str, Any]:
    """Every centre scored and solved on a LocalCluster of ``workers`` processes, as ``polku allocate`` does."""
    from features.centres import CENTRES
    from models.batch import ModelSource, dask_client, worker_peak_rss
    from service.allocate import AllocateOptions, CentreInput, allocate_centres, solver_pool

    source = ModelSource(str(bundle.resolve()))
    options = AllocateOptions(centres=tuple(CENTRES), on=on, block_clients=block_clients, top_k=top_k)
    centres: list[dict[str, Any]] = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with (
        solver_pool() as pool,
        dask_client(None, workers, processes=True, memory_limit=memory_limit) as client,
    ):
        from distributed import get_task_stream

        started = time.perf_counter()
        with get_task_stream(client) as stream:
            inputs = (
                CentreInput(
                    centre,
                    [c for c in clients if c.centre == centre and c.consent.matching],
                    [o for o in opportunities if o.centre == centre],
                    f"{centre}:scale",
                )
                for centre in CENTRES
            )
            present = (i for i in inputs if i.clients and i.opportunities)
            for run, _ in allocate_centres(client, source, present, options, pool):
                centres.append(
                    {
                        "centre": run.centre,
                        "clients": run.n_clients,
                        "items": run.n_items,
                        "pairs": run.n_pairs,
                        "collect_s": round(run.score_seconds, 2),
                        "solve_s": round(run.solve_seconds, 2),
                        "done_s": round(time.perf_counter() - started, 2),
                        "priced_items": run.priced_items,
                        "allocated": run.allocated,
                        "value": round(run.total_value, 3),
                    }
                )
                logger.info("workers=%d %s", workers, centres[-1])
        scored = max((c["done_s"] for c in centres), default=0.0)
        tasks = task_seconds(stream.data)
        peaks = client.run(worker_peak_rss)
        solver_peak = pool.submit(worker_peak_rss).result()
    total = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    driver_cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    busy = sum(t["compute_s"] for t in tasks.values())
    return {
        "workers": workers,
        "seconds": round(total, 2),
        "cluster_start_s": round(started - start, 2),
        "scored_and_solved_s": round(scored, 2),
        "solve_s": round(sum(c["solve_s"] for c in centres), 2),
        "worker_task_seconds": tasks,
        "worker_utilisation": round(busy / (workers * scored), 3) if scored else None,
        "driver_cpu_s": round(driver_cpu, 2),
        "pairs": sum(c["pairs"] for c in centres),
        "clients": sum(c["clients"] for c in centres),
        "worker_peak_rss_bytes": sorted(int(v) for v in peaks.values()),
        "solver_process_peak_rss_bytes": int(solver_peak),
        "centres": centres,
    }


def task_seconds(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task function (Dask key prefix): count, compute seconds on the workers, first start, last end."""
    from distributed.utils import key_split

    out: dict[str, dict[str, float]] = {}
    first = min((s["start"] for r in records for s in r.get("startstops", ()) if s["action"] == "compute"), default=0)
    for record in records:
        prefix = key_split(record["key"])
        for span in record.get("startstops", ()):
            if span["action"] != "compute":
                continue
            entry = out.setdefault(prefix, {"tasks": 0, "compute_s": 0.0, "first_start_s": 1e18, "last_end_s": 0.0})
            entry["tasks"] += 1
            entry["compute_s"] += span["stop"] - span["start"]
            entry["first_start_s"] = min(entry["first_start_s"], span["start"] - first)
            entry["last_end_s"] = max(entry["last_end_s"], span["stop"] - first)
    return {k: {n: round(v, 2) for n, v in e.items()} for k, e in out.items()}


def report(runs: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """The runs with the issue's targets, and whether each is met (None: not measured by these runs)."""
    by_workers = {r["workers"]: r for r in runs}
    full_size = (config["clients"], config["opportunities"]) == TARGET_SIZE and config["top_k"] is not None
    two, one = by_workers.get(2), by_workers.get(1)
    speedup = round(one["seconds"] / two["seconds"], 3) if one and two else None
    peak = max((max(r["worker_peak_rss_bytes"], default=0) for r in runs), default=0)
    targets = {
        "batch_seconds_2_workers": {
            "target": f"<= {TARGET_SECONDS:.0f} s at 100k x 50k",
            "value": two["seconds"] if two else None,
            "met": (two["seconds"] <= TARGET_SECONDS) if two and full_size else None,
        },
        "speedup_2_vs_1": {
            "target": f">= {TARGET_SPEEDUP}",
            "value": speedup,
            "met": (speedup >= TARGET_SPEEDUP) if speedup is not None else None,
        },
        "worker_peak_rss": {
            "target": f"<= {TARGET_WORKER_BYTES / 1024**3:.0f} GiB per worker",
            "value": peak,
            "met": peak <= TARGET_WORKER_BYTES if runs else None,
        },
    }
    return {"config": config, "runs": runs, "targets": targets}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=TARGET_SIZE[0], help="Clients scored (first N of the world).")
    parser.add_argument("--opportunities", type=int, default=TARGET_SIZE[1], help="Catalogue size of the world.")
    parser.add_argument("--world", type=Path, default=None, help="A saved world (default: generated at the size).")
    parser.add_argument("--world-clients", type=int, default=None, help="Clients of the generated world (>= N).")
    parser.add_argument("--workers", default="1,2", help="Worker counts, comma-separated (one batch each).")
    parser.add_argument("--block-clients", type=int, default=None, help="Clients per task (polku allocate's).")
    parser.add_argument("--top-k", type=int, default=None, help="Pairs kept per list (0: all; polku's default).")
    parser.add_argument(
        "--memory-limit", default="0", help="Dask memory limit per worker (default none: the peak is measured)."
    )
    parser.add_argument("--bundle", type=Path, default=None, help="Model bundle (default: trained once).")
    parser.add_argument("--date", default="2026-11-30", help="Reference date.")
    parser.add_argument("--out", type=Path, default=None, help="Report path (default: benchmarks/results/...).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from features.paths import data_dir
    from service.allocate import DEFAULT_BLOCK_CLIENTS, DEFAULT_TOP_K

    top_k = DEFAULT_TOP_K if args.top_k is None else (args.top_k or None)
    block = args.block_clients or DEFAULT_BLOCK_CLIENTS
    world = args.world or ensure_world(max(args.world_clients or 0, args.clients), args.opportunities)
    bundle = ensure_bundle(args.bundle or data_dir() / "scale-bundle")
    t0 = time.perf_counter()
    clients, opportunities = read_population(world, args.clients)
    read_s = time.perf_counter() - t0
    config = {
        "clients": len(clients),
        "opportunities": len(opportunities),
        "world": str(world),
        "block_clients": block,
        "top_k": top_k,
        "memory_limit": args.memory_limit,
        "date": args.date,
        "cpus": os.cpu_count(),
        "read_world_s": round(read_s, 2),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    runs = []
    for workers in (int(w) for w in args.workers.split(",")):
        runs.append(
            run_batch(
                clients,
                opportunities,
                bundle,
                date.fromisoformat(args.date),
                workers=workers,
                block_clients=block,
                top_k=top_k,
                memory_limit=None if args.memory_limit in ("0", "none") else args.memory_limit,
            )
        )
        runs[-1]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    config["driver_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = report(runs, config)
    path = args.out or RESULTS / f"allocate_scale-{len(clients)}x{len(opportunities)}-k{top_k or 'all'}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=_json_default), encoding="utf-8")
    print(json.dumps(out["targets"], indent=1, default=_json_default))  # noqa: T201
    logger.info("report: %s", path)
    return out


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    main()
