"""Child process of the training section: build the training table, tile it to N rows, fit; print JSON.

Run as ``python -m benchmarks.train_worker --rows N --world-clients M``; its own peak RSS is reported
(``resource.getrusage``), so the parent's memory does not count.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np


def _tile(X: np.ndarray, y: np.ndarray, q: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    reps = int(np.ceil(rows / len(X)))
    n_q = int(q.max()) + 1
    Xt = np.tile(X, (reps, 1))[:rows]
    yt = np.tile(y, reps)[:rows]
    qt = (np.tile(q, reps) + np.repeat(np.arange(reps), len(q)) * n_q)[:rows]
    return Xt, yt, qt


def main(argv: list[str] | None = None) -> int:
    """Build, tile, fit, report."""
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--world-clients", type=int, default=3000)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    from training.config import TrainConfig
    from training.datasets import build_training_data
    from training.world import generate_world

    world = generate_world(n_clients=args.world_clients, seed=7)
    t_world = time.perf_counter() - t0
    t1 = time.perf_counter()
    cfg = TrainConfig()
    data = build_training_data(world, cfg)
    t_data = time.perf_counter() - t1
    from models.rankers import LightGBMRanker

    t2 = time.perf_counter()
    _, qcodes = np.unique(np.asarray(data.train.query_ids), return_inverse=True)
    X, y, q = _tile(np.asarray(data.train.X), np.asarray(data.train.y), qcodes.astype(np.int64), args.rows)
    eval_set = None
    if data.valid is not None:
        _, vcodes = np.unique(np.asarray(data.valid.query_ids), return_inverse=True)
        v_rows = max(int(args.rows * cfg.valid_fraction), 1)
        eval_set = _tile(np.asarray(data.valid.X), np.asarray(data.valid.y), vcodes.astype(np.int64), v_rows)
    t_tile = time.perf_counter() - t2
    t3 = time.perf_counter()
    ranker = LightGBMRanker(
        params={"seed": cfg.seed, **cfg.lgb_params},
        num_boost_round=cfg.num_boost_round,
        early_stopping_rounds=cfg.early_stopping_rounds,
    ).fit(X, y, q, feature_names=data.train.feature_names, eval_set=eval_set)
    t_fit = time.perf_counter() - t3
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {
        "rows": int(len(X)),
        "valid_rows": 0 if eval_set is None else int(len(eval_set[0])),
        "base_rows": int(len(data.train)),
        "queries": int(q.max()) + 1,
        "world_s": t_world,
        "dataset_s": t_data,
        "tile_s": t_tile,
        "fit_s": t_fit,
        "train_s": t_data + t_tile + t_fit,
        "trees": int(ranker.booster_.num_trees()),
        "peak_rss_mb": peak_mb,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
