"""``polku train --dask``: lightgbm.dask on a LocalCluster gives a booster of the same quality as local training."""

from __future__ import annotations

import numpy as np
import pytest

from models.batch import dask_client
from models.rankers import LightGBMRanker
from training.distributed import dask_booster_trainer, query_partitions, query_rows


def test_partitions_keep_whole_queries_and_balance_rows() -> None:
    sizes = np.array([3, 1, 4, 2, 5, 5])
    order, rows, queries = query_partitions(sizes, 2, seed=3)
    assert sorted(order.tolist()) == list(range(6))
    assert sum(rows) == 20
    assert sum(queries) == 6
    bounds = np.r_[0, np.cumsum(queries)]
    for i in range(len(rows)):
        part = order[bounds[i] : bounds[i + 1]]
        assert sizes[part].sum() == rows[i]  # whole queries: a partition's rows are exactly its queries' rows
        assert np.all(np.diff(part) > 0)  # in their original order within the partition
    assert max(abs(r - 10) for r in rows) <= sizes.max() / 2  # each cut at the query end nearest its target
    order, rows, queries = query_partitions([10], 3)
    assert (order.tolist(), rows, queries) == ([0], (10,), (1,))


def test_partitions_are_a_seeded_sample_of_every_cohort() -> None:
    """Queries sorted by client come in cohort blocks; each partition must hold a share of every cohort."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(20, 45, size=400)
    cohort = np.repeat(np.arange(4), 100)
    order, rows, queries = query_partitions(sizes, 2, seed=7)
    first = order[: queries[0]]
    second = order[queries[0] :]
    for part in (first, second):
        counts = np.bincount(cohort[part], minlength=4)
        assert np.all(counts >= 30), counts  # ~50 of each cohort's 100 queries, never a contiguous block
    assert abs(rows[0] - sizes.sum() / 2) <= sizes.max() / 2
    again = query_partitions(sizes, 2, seed=7)
    assert np.array_equal(again[0], order)
    assert again[1:] == (rows, queries)
    assert not np.array_equal(query_partitions(sizes, 2, seed=8)[0], order)


def test_query_rows_takes_each_query_whole() -> None:
    sizes = np.array([2, 3, 1])
    group = np.repeat(np.arange(3), sizes)
    take = query_rows(sizes, [2, 0, 1])
    assert take.tolist() == [5, 0, 1, 2, 3, 4]
    assert group[take].tolist() == [2, 0, 0, 1, 1, 1]


def _data(seed: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n_queries), 20)
    X = rng.normal(size=(group.size, 6))
    signal = X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.5, group.size)
    y = np.digitize(signal, [0.5, 1.0, 1.5, 2.0])
    return X, y, group


def _ndcg10(scores: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
    out = []
    for q in np.unique(group):
        m = group == q
        rel, s = y[m], scores[m]
        gain = (2.0 ** rel[np.argsort(-s, kind="stable")][:10] - 1) / np.log2(np.arange(2, 12))
        ideal = (2.0 ** np.sort(rel)[::-1][:10] - 1) / np.log2(np.arange(2, 12))
        out.append(gain.sum() / ideal.sum() if ideal.sum() else 0.0)
    return float(np.mean(out))


@pytest.mark.slow
def test_dask_training_on_a_local_cluster_matches_local_quality() -> None:
    X, y, group = _data(1, 300)
    Xv, yv, gv = _data(2, 100)
    Xt, yt, gt = _data(3, 100)
    names = [f"f{i}" for i in range(6)]
    params = {"min_data_in_leaf": 5, "num_threads": 1}
    local = LightGBMRanker(params=params, num_boost_round=80, early_stopping_rounds=20)
    local.fit(X, y, group, feature_names=names, eval_set=(Xv, yv, gv))
    with dask_client(None, 2) as client:
        distributed = LightGBMRanker(
            params=params, num_boost_round=80, early_stopping_rounds=20, booster_trainer=dask_booster_trainer(client)
        )
        distributed.fit(X, y, group, feature_names=names, eval_set=(Xv, yv, gv))
    assert distributed.best_iteration_ is not None
    assert 1 <= distributed.best_iteration_ <= 80
    assert np.all(np.isfinite(distributed.score(Xt)))
    assert _ndcg10(distributed.score(Xt), yt, gt) == pytest.approx(_ndcg10(local.score(Xt), yt, gt), abs=0.02)
