"""Section 4: training end to end at 100k and 1M pair rows (seconds and peak RSS, in a child process)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.data import Fixtures
from benchmarks.report import Section

TARGET_SECONDS_1M = 120.0


def run(section: Section, fx: Fixtures) -> None:
    """One child process per size: world -> training table (featurizer) -> tiled to N rows -> LightGBM fit."""
    section.note(
        "Child process per size: generate the world, build the training table with the real pipeline "
        "(training.datasets.build_training_data: labels + PairFeaturizer), tile it to N rows with distinct "
        "query ids (validation tiled to the configured fraction), then LightGBMRanker.fit with TrainConfig "
        "defaults (early stopping). train_s = dataset + tile + fit (world generation excluded, shown apart). "
        "Peak RSS = the child's ru_maxrss."
    )
    results: dict[int, dict[str, float]] = {}
    for rows in fx.sizes.train_rows:
        t0 = time.perf_counter()
        proc = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "benchmarks.train_worker",
                "--rows",
                str(rows),
                "--world-clients",
                str(fx.sizes.world_clients),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=Path.cwd(),
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            section.note(f"{rows} rows failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
            continue
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["process_wall_s"] = wall
        results[rows] = out
        section.add_row(**out)
    big = max(fx.sizes.train_rows)
    label = f"{big // 1_000_000}M" if big >= 1_000_000 else f"{big // 1000}k"
    section.check(f"training at {label} rows", results.get(big, {}).get("train_s"), "<=", TARGET_SECONDS_1M, "s")
