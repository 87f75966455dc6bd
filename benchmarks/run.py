"""Run the Polku benchmarks: ``python -m benchmarks.run [--smoke] [--out benchmarks/results/latest.json]``.

Sections (each independent; a failure is recorded in the report and the run continues):
suggestions, model_time, candidates, training, quality, service, coding, congestion, throughput.
"""

from __future__ import annotations

import argparse
import functools
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from benchmarks import (
    candidates,
    coding,
    congestion,
    model_time,
    quality,
    startup,
    suggestions,
    training_time,
    wrk,
)
from benchmarks.data import Fixtures, Sizes
from benchmarks.report import Section, build_report, format_report, run_section, write_report

logger = logging.getLogger("benchmarks")

DEFAULT_OUT = Path("benchmarks/results/latest.json")

SECTIONS: dict[str, tuple[str, Callable[[Section, Fixtures], None]]] = {
    "suggestions": ("POST /v1/suggestions: in process and over HTTP, 1k/10k/50k opportunities", suggestions.run),
    "service": ("service start-up to ready, RSS after start and after 10k requests", startup.run),
    "throughput": ("POST /v1/suggestions with 2 uvicorn workers at concurrency 16, measured by wrk", wrk.run),
    "model_time": ("model time (compiled trees) vs LightGBM predict(num_threads=1) on the same rows", model_time.run),
    "candidates": ("POST /v1/opportunities/{id}/candidates with 10k and 100k stored clients", candidates.run),
    "training": ("training end to end at 100k and 1M pair rows: seconds and peak RSS", training_time.run),
    "quality": ("quality of the latest train run: NDCG@10 per ranker, ratios to oracle and points", quality.run),
    "coding": ("occupation coder: accuracy on hand-coded titles vs plain baseline, latency, index cost", coding.run),
    "congestion": ("seats: morning simulation plain vs congestion-aware, allocate time, serving cost", congestion.run),
}
"""Sections in run order (the service section reuses the largest suggestions server, so it runs second)."""


def _call(fn: Callable[[Section, Fixtures], None], fx: Fixtures, section: Section) -> None:
    fn(section, fx)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (< 60 s), as run by the test suite")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report path (default {DEFAULT_OUT})")
    p.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run only these sections")
    p.add_argument("--workdir", type=Path, default=None, help="keep prepared data here (default: a temp dir)")
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected sections, write the JSON report, print the table. Returns 0 (failures are in the report)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "httpx", "service", "training", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sizes = Sizes.smoke() if args.smoke else Sizes()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="polku-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    fx = Fixtures(sizes=sizes, workdir=workdir)
    start = time.perf_counter()
    sections: list[Section] = []
    try:
        for name, (title, fn) in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            sections.append(run_section(name, title, functools.partial(_call, fn, fx)))
            report = build_report(sections, smoke=args.smoke, seconds=time.perf_counter() - start, sizes=asdict(sizes))
            write_report(report, args.out)  # after every section: a partial report survives an abort
    finally:
        fx.close_server()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report = build_report(sections, smoke=args.smoke, seconds=time.perf_counter() - start, sizes=asdict(sizes))
    report["fixtures"] = {"world_seconds": fx.world_seconds, "model": fx.model_info}
    write_report(report, args.out)
    if not args.quiet:
        print(format_report(report))
        print(f"\nreport: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
