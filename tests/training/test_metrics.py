"""Metric tests: against sklearn.metrics.ndcg_score on random cases (with ties) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from training import metrics as m


def _sk_ndcg(rel: np.ndarray, scores: np.ndarray, k: int) -> float:
    return float(ndcg_score((2.0**rel - 1.0)[None, :], scores[None, :], k=k))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 30),
    k=st.integers(1, 15),
    seed=st.integers(0, 2**31 - 1),
    n_distinct=st.integers(1, 6),
)
def test_ndcg_matches_sklearn_with_ties(n: int, k: int, seed: int, n_distinct: int) -> None:
    rng = np.random.default_rng(seed)
    rel = rng.integers(0, 5, size=n).astype(float)
    scores = rng.integers(0, n_distinct, size=n).astype(float)  # few distinct values -> many ties
    ours = m.ndcg_at_k(rel, scores, np.zeros(n, dtype=int), k, empty_as_zero=True)
    assert ours == pytest.approx(_sk_ndcg(rel, scores, k), abs=1e-12)


def test_ndcg_many_queries_shuffled_rows_match_sklearn_per_query() -> None:
    rng = np.random.default_rng(0)
    n_q, n_items, k = 40, 12, 5
    rel = rng.integers(0, 5, size=(n_q, n_items)).astype(float)
    scores = np.round(rng.normal(size=(n_q, n_items)), 1)
    expected = np.mean([_sk_ndcg(rel[q], scores[q], k) for q in range(n_q)])
    expected_all = float(ndcg_score(2.0**rel - 1.0, scores, k=k))
    assert expected == pytest.approx(expected_all)
    qid = np.repeat([f"q{q:03d}" for q in range(n_q)], n_items)
    perm = rng.permutation(n_q * n_items)
    ours = m.ndcg_at_k(rel.ravel()[perm], scores.ravel()[perm], qid[perm], k, empty_as_zero=True)
    assert ours == pytest.approx(expected, abs=1e-12)


def test_ndcg_hand_case() -> None:
    rel = np.array([3.0, 2.0, 0.0, 1.0])
    scores = np.array([0.1, 0.9, 0.5, 0.3])  # order: rel 2, 0, 1, 3
    dcg = 3 / math.log2(2) + 0 + 1 / math.log2(4) + 7 / math.log2(5)
    idcg = 7 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg_at_k(rel, scores, np.zeros(4), 10) == pytest.approx(dcg / idcg)
    assert m.ndcg_at_k(rel, rel, np.zeros(4), 2) == pytest.approx(1.0)


def test_ndcg_skips_queries_without_relevant_items_unless_asked() -> None:
    rel = np.array([0.0, 0.0, 2.0, 0.0])
    scores = np.array([1.0, 0.0, 0.0, 1.0])
    q = np.array([0, 0, 1, 1])
    assert m.ndcg_at_k(rel, scores, q, 10) == pytest.approx(1 / math.log2(3))
    assert m.ndcg_at_k(rel, scores, q, 10, empty_as_zero=True) == pytest.approx(0.5 / math.log2(3))
    per = m.ndcg_per_query(rel, scores, q, 10)
    assert np.isnan(per[0])


def test_map_and_recall_hand_case() -> None:
    rel = np.array([4, 0, 3, 1, 3, 0], dtype=float)
    scores = np.array([6, 5, 4, 3, 2, 1], dtype=float)  # relevant (>=3) at ranks 1, 3, 5
    # AP@3 = (1/1 + 2/3) / min(3, 3)
    assert m.map_at_k(rel, scores, np.zeros(6), 3) == pytest.approx((1 + 2 / 3) / 3)
    assert m.map_at_k(rel, scores, np.zeros(6), 10) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert m.recall_at_k(rel, scores, np.zeros(6), 3) == pytest.approx(2 / 3)
    assert m.recall_at_k(rel, scores, np.zeros(6), 1) == pytest.approx(1 / 3)


def test_map_perfect_ranking_is_one_and_recall_bounds() -> None:
    rng = np.random.default_rng(3)
    rel = rng.integers(0, 5, size=200).astype(float)
    q = np.repeat(np.arange(20), 10)
    assert m.map_at_k(rel, rel + rng.uniform(0, 0.1, 200), q, 10) == pytest.approx(1.0)
    r = m.recall_at_k(rel, rng.normal(size=200), q, 5)
    assert 0.0 <= r <= 1.0


def test_coverage_congestion_gini() -> None:
    # Two queries, k=2; items: q0 -> a, b ; q1 -> a, c
    q = np.array([0, 0, 0, 1, 1, 1])
    items = np.array(["a", "b", "d", "a", "c", "d"])
    scores = np.array([3, 2, 1, 3, 2, 1], dtype=float)
    assert m.coverage_at_k(scores, q, items, 2, n_items=4) == pytest.approx(3 / 4)
    shares = np.array([0.5, 0.25, 0.25])
    expected = 1 + float(np.sum(shares * np.log(shares))) / math.log(4)
    assert m.congestion_at_k(scores, q, items, 2, n_items=4) == pytest.approx(expected)
    assert m.gini_at_k(scores, q, items, 2, n_items=4) == pytest.approx(m.gini([2, 1, 1, 0]))
    assert m.gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert m.gini([0, 0, 0, 4]) == pytest.approx(0.75)


def test_congestion_extremes() -> None:
    n = 10
    q = np.arange(n)
    # Every query shows one distinct item -> evenly spread over the whole catalogue.
    assert m.congestion_at_k(np.ones(n), q, np.arange(n), 1, n_items=n) == pytest.approx(0.0)
    # Every query shows the same item -> fully congested.
    assert m.congestion_at_k(np.ones(n), q, np.zeros(n, dtype=int), 1, n_items=n) == pytest.approx(1.0)


def test_exposure_and_group_gap() -> None:
    values = np.array([1.0, 0.0, 0.0, 1.0])
    scores = np.array([2.0, 1.0, 2.0, 1.0])
    q = np.array(["a", "a", "b", "b"])
    keys, exp = m.exposure_per_query(values, scores, q, 2)
    d1, d2 = 1.0, 1 / math.log2(3)
    assert list(keys) == ["a", "b"]
    assert exp == pytest.approx([d1 / (d1 + d2), d2 / (d1 + d2)])
    by = m.mean_by_group(exp, ["f", "m"])
    assert m.group_gap(by) == pytest.approx(abs(exp[0] - exp[1]))
    assert m.mean_by_group(np.array([1.0, np.nan]), ["x", "y"], min_size=1) == {"x": 1.0}
    assert m.group_gap({"x": 1.0}) == 0.0


def test_ranked_lists_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        m.RankedLists.build([1, 2], [1.0], [0, 0])
    with pytest.raises(ValueError, match="finite"):
        m.RankedLists.build([1, 2], [1.0, np.nan], [0, 0])
