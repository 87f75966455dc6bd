"""Rankers: LightGBM learns a synthetic relevance, save/load parity, contributions, points rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.baselines import PointRule, PointsRanker, PopularityRanker
from models.rankers import LightGBMRanker, Ranker, RankerError, load_ranker

NAMES = ["ess_cov", "opt_cov", "occ_prior_isco4", "lang_gap_best", "dist_km", "hist_accept_rate", "noise"]


def _ndcg10(y: np.ndarray, s: np.ndarray, q: np.ndarray) -> float:
    out = []
    for g in np.unique(q):
        m = q == g
        rel, sc = y[m], s[m]
        disc = 1.0 / np.log2(np.arange(2, 12))
        top = np.argsort(-sc, kind="stable")[:10]
        ideal = np.sort(rel)[::-1][:10]
        dcg = float(((2.0 ** rel[top] - 1) * disc[: len(top)]).sum())
        idcg = float(((2.0**ideal - 1) * disc[: len(ideal)]).sum())
        if idcg > 0:
            out.append(dcg / idcg)
    return float(np.mean(out))


def _synthetic(seed: int, n_queries: int = 120, per_query: int = 25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    X = np.column_stack(
        [
            rng.random(n),
            rng.random(n),
            rng.integers(0, 2, n),
            rng.integers(0, 5, n),
            rng.random(n) * 80,
            rng.random(n),
            rng.normal(size=n),
        ]
    ).astype(np.float32)
    utility = 2.5 * X[:, 0] + 1.5 * X[:, 2] - 0.5 * X[:, 3] - 0.02 * X[:, 4] + 0.3 * rng.normal(size=n)
    y = np.digitize(utility, np.quantile(utility, [0.5, 0.75, 0.9, 0.97])).astype(np.int32)
    q = np.repeat(np.arange(n_queries), per_query)
    shuffle = rng.permutation(n)  # rows of a query need not be contiguous
    return X[shuffle], y[shuffle], q[shuffle]


@pytest.fixture(scope="module")
def fitted() -> LightGBMRanker:
    X, y, q = _synthetic(1)
    Xv, yv, qv = _synthetic(2, n_queries=40)
    return LightGBMRanker(num_boost_round=80, params={"min_data_in_leaf": 10}).fit(
        X, y, q, feature_names=NAMES, eval_set=(Xv, yv, qv)
    )


def test_lightgbm_beats_random_on_synthetic_relevance(fitted: LightGBMRanker) -> None:
    X, y, q = _synthetic(3, n_queries=60)
    model = _ndcg10(y, fitted.score(X), q)
    random = _ndcg10(y, np.random.default_rng(0).random(len(y)), q)
    assert model > random + 0.2
    assert model > 0.75


def test_lightgbm_save_load_gives_identical_scores(fitted: LightGBMRanker, tmp_path: Path) -> None:
    X, _, _ = _synthetic(4, n_queries=10)
    fitted.save(tmp_path / "r")
    loaded = load_ranker(tmp_path / "r")
    assert isinstance(loaded, LightGBMRanker)
    assert loaded.feature_names_ == NAMES
    np.testing.assert_array_equal(loaded.score(X), fitted.score(X))
    assert not list((tmp_path / "r").glob("*.pkl"))


def test_lightgbm_contributions_sum_to_score(fitted: LightGBMRanker) -> None:
    X, _, _ = _synthetic(5, n_queries=5)
    contrib = fitted.contributions(X)
    assert contrib.shape == (len(X), len(NAMES) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), fitted.score(X), rtol=1e-6, atol=1e-6)


def test_lightgbm_empty_input_and_wrong_width(fitted: LightGBMRanker) -> None:
    assert fitted.score(np.empty((0, len(NAMES)), dtype=np.float32)).shape == (0,)
    with pytest.raises(RankerError, match="feature columns"):
        fitted.score(np.zeros((2, 3)))
    with pytest.raises(RankerError, match="not fitted"):
        LightGBMRanker().score(np.zeros((1, 3)))


def _row(**values: float) -> np.ndarray:
    row = np.zeros(len(NAMES), dtype=np.float32)
    for k, v in values.items():
        row[NAMES.index(k)] = v
    return row


def test_points_ranker_rewards_matches_and_penalises_gaps() -> None:
    ranker = PointsRanker().bind(NAMES)
    base = _row(ess_cov=0.5, dist_km=5)
    X = np.stack(
        [
            base,
            _row(ess_cov=0.9, dist_km=5),  # more skills
            _row(ess_cov=0.5, dist_km=5, occ_prior_isco4=1),  # has worked in the occupation
            _row(ess_cov=0.5, dist_km=5, lang_gap_best=2),  # language gap
            _row(ess_cov=0.5, dist_km=45),  # far away
        ]
    )
    s = ranker.score(X)
    assert s[1] > s[0]
    assert s[2] > s[0]
    assert s[3] < s[0]
    assert s[4] < s[0]
    contrib = ranker.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), s)
    assert contrib[3, NAMES.index("lang_gap_best")] < 0
    assert contrib[2, NAMES.index("occ_prior_isco4")] > 0


def test_points_and_popularity_round_trip(tmp_path: Path) -> None:
    X, y, q = _synthetic(6, n_queries=4)
    for ranker in (
        PointsRanker(rules=[PointRule("ess_cov", 10.0), PointRule("dist_km", -1.0, threshold=5, cap=None)]),
        PopularityRanker(),
    ):
        ranker.fit(X, y, q, feature_names=NAMES)
        ranker.save(tmp_path / ranker.name)
        loaded = Ranker.load(tmp_path / ranker.name)
        assert type(loaded) is type(ranker)
        np.testing.assert_array_equal(loaded.score(X), ranker.score(X))
        np.testing.assert_allclose(loaded.contributions(X).sum(axis=1), loaded.score(X))


def test_popularity_scores_the_acceptance_column() -> None:
    X, _, _ = _synthetic(7, n_queries=2)
    ranker = PopularityRanker().bind(NAMES)
    np.testing.assert_array_equal(ranker.score(X), X[:, NAMES.index("hist_accept_rate")].astype(np.float64))


def test_load_rejects_bad_directory(tmp_path: Path) -> None:
    with pytest.raises(RankerError):
        load_ranker(tmp_path)
    (tmp_path / "ranker.json").write_text('{"type": "nope", "feature_names": []}')
    with pytest.raises(RankerError, match="unknown ranker type"):
        load_ranker(tmp_path)


def test_lightgbm_sample_weights_reweight_the_objective() -> None:
    X, y, q = _synthetic(3, n_queries=60)

    def fit(weight: np.ndarray | None) -> np.ndarray:
        ranker = LightGBMRanker(num_boost_round=20, params={"min_data_in_leaf": 10, "num_threads": 1})
        return ranker.fit(X, y, q, feature_names=NAMES, sample_weight=weight).score(X)

    unweighted = fit(None)
    assert np.allclose(fit(np.ones(len(y))), unweighted)  # weights of 1 change nothing
    skewed = np.where(X[:, 2] > 0.5, 5.0, 0.2)
    assert not np.allclose(fit(skewed), unweighted)
