"""Distributed training for ``polku train --dask``: the acceptance LambdaMART with ``lightgbm.dask``.

The training rows, sorted by query, are cut into one partition per Dask worker at query boundaries (a query never
spans two partitions, which LightGBM's distributed lambdarank requires); each worker trains on its partition and
LightGBM's socket-based data-parallel learner combines them. The booster that comes back is an ordinary LightGBM
booster, so the packaged model, its pyfunc and serving are unchanged.

LightGBM's Dask interface has no early stopping, so all ``num_boost_round`` trees are grown. The default is an
embedded ``LocalCluster``; ``--scheduler tcp://host:8786`` uses an existing cluster (runbook).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from models.rankers import BoosterTrainer

_LOCAL_ONLY = ("metric", "eval_at", "num_threads", "verbosity")
"""Parameters dropped for the Dask learner (no validation set there; threads and logging set per worker)."""


def query_partitions(sizes: npt.ArrayLike, n_parts: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Rows and queries per partition: ``n_parts`` contiguous blocks of whole queries of about equal rows.

    Returns:
        (rows per partition, queries per partition), both without empty partitions.
    """
    s = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(s)
    total = int(ends[-1]) if s.size else 0
    cuts = np.searchsorted(ends, np.linspace(0, total, max(n_parts, 1) + 1)[1:-1], side="left") + 1
    q_bounds = np.unique(np.r_[0, np.minimum(cuts, s.size), s.size])
    row_bounds = np.r_[0, ends][q_bounds]
    rows = tuple(int(x) for x in np.diff(row_bounds) if x > 0)
    queries = tuple(int(q) for q, r in zip(np.diff(q_bounds), np.diff(row_bounds), strict=True) if r > 0)
    return rows, queries


def dask_booster_trainer(client: Any, n_parts: int | None = None) -> BoosterTrainer:
    """A :data:`models.rankers.BoosterTrainer` that trains with ``lightgbm.dask.DaskLGBMRanker`` on ``client``."""

    def train(
        params: dict[str, Any],
        X: npt.NDArray[np.floating[Any]],
        y: npt.NDArray[np.int32],
        sizes: npt.NDArray[np.int64],
        names: list[str],
        rounds: int,
    ) -> Any:
        import dask.array
        from lightgbm.dask import DaskLGBMRanker

        from_array: Any = dask.array.from_array  # untyped

        workers = n_parts or max(len(client.scheduler_info()["workers"]), 1)
        rows, queries = query_partitions(sizes, workers)
        dx = from_array(np.ascontiguousarray(X), chunks=(rows, X.shape[1]))
        dy = from_array(y, chunks=(rows,))
        dg = from_array(sizes, chunks=(queries,))
        kept = {k: v for k, v in params.items() if k not in _LOCAL_ONLY}
        model = DaskLGBMRanker(client=client, n_estimators=rounds, verbose=-1, **kept)
        model.fit(dx, dy, group=dg, feature_name=names)
        return model.to_local().booster_

    return train
