"""Scaling the nightly allocation: top-K pruning per list, the score grid, and one problem per kind."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from features.records import KINDS, Opportunity
from models.allocation import solve
from models.batch import (
    SCORE_STEP,
    ScoredPairs,
    allocation_problem,
    kind_index,
    kind_problems,
    merge_allocations,
    prune_top_k,
    quantize_scores,
    worker_peak_rss,
)
from tests.factories import make_opportunity, make_training

ON = date(2026, 3, 2)


def _pairs(seed: int, n_rows: int = 12, n_items: int = 15, density: float = 0.6) -> ScoredPairs:
    rng = np.random.default_rng(seed)
    row, item = np.nonzero(rng.random((n_rows, n_items)) < density)
    return ScoredPairs(row.astype(np.int64), item.astype(np.int64), rng.random(row.size))


def test_prune_keeps_exactly_each_lists_k_best_scores() -> None:
    pairs = _pairs(1, n_rows=20, n_items=30)
    kind_of = np.arange(30) % len(KINDS)
    kept = prune_top_k(pairs, kind_of, 4)
    lists = pairs.row * len(KINDS) + kind_of[pairs.item]
    kept_lists = kept.row * len(KINDS) + kind_of[kept.item]
    for key in np.unique(lists):
        scores = np.sort(pairs.score[lists == key])[::-1]
        got = np.sort(kept.score[kept_lists == key])[::-1]
        assert got.tolist() == scores[:4].tolist()  # the 4 best, or all of a shorter list
    assert np.all(np.diff(kept.row) >= 0)  # original order (rows ascending) is kept
    assert prune_top_k(pairs, kind_of, 100) is pairs  # nothing to drop


def test_prune_breaks_ties_by_item_and_refuses_k_below_one() -> None:
    pairs = ScoredPairs(np.zeros(3, np.int64), np.array([5, 2, 9]), np.array([1.0, 1.0, 1.0]))
    kept = prune_top_k(pairs, np.zeros(10, np.int64), 2)
    assert kept.item.tolist() == [5, 2]
    with pytest.raises(ValueError, match="at least one"):
        prune_top_k(pairs, np.zeros(10, np.int64), 0)


def test_prune_of_no_pairs_is_no_pairs() -> None:
    empty = ScoredPairs.concat([], [])
    assert prune_top_k(empty, np.zeros(3, np.int64), 10).row.size == 0


def test_quantized_scores_lie_on_the_binary_grid_within_half_a_step() -> None:
    pairs = _pairs(2)
    q = quantize_scores(pairs)
    assert np.all(np.abs(q.score - pairs.score) <= SCORE_STEP / 2)
    assert np.array_equal(q.score / SCORE_STEP, np.round(q.score / SCORE_STEP))
    assert q.row is pairs.row


def _catalogue(seed: int, n_items: int) -> list[Opportunity]:
    rng = np.random.default_rng(seed)
    out = []
    for j in range(n_items):
        seats, kind = int(rng.integers(0, 3)), KINDS[int(rng.integers(0, len(KINDS)))]
        if kind == "training":
            out.append(make_training(seats=seats, seats_taken=0, intake={"continuous": True}))
        else:
            out.append(make_opportunity(kind=kind, seats=seats, opportunity_id=f"opp-{seed}-{j}"))
    return out


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_one_problem_per_kind_gives_the_single_problems_optimum_and_prices(seed: int) -> None:
    n_rows, n_items = 12, 15
    pairs = quantize_scores(_pairs(seed, n_rows, n_items))
    catalogue = _catalogue(seed, n_items)
    whole_problem = allocation_problem(pairs, n_rows, catalogue, ON)
    whole = solve(whole_problem)
    problems = kind_problems(pairs, n_rows, catalogue, ON)
    kind_of = kind_index(catalogue)
    assert [k for k, _ in enumerate(problems)] == list(range(len(KINDS)))
    assert all(np.all(kind_of[items] == k) for k, (items, _) in enumerate(problems))
    assert sum(p.agent.size for _, p in problems) == whole_problem.agent.size
    merged = merge_allocations([(items, solve(p)) for items, p in problems], n_items)
    assert merged.value == pytest.approx(whole.value)
    assert merged.prices == pytest.approx(whole.prices)
    assert merged.assignment.size == whole.assignment.size == n_rows * len(KINDS)
    taken = np.bincount(merged.assignment[merged.assignment >= 0], minlength=n_items)
    assert np.all(taken <= whole_problem.capacity)
    assigned = np.flatnonzero(merged.assignment >= 0)
    assert np.all(kind_of[merged.assignment[assigned]] == assigned % len(KINDS))  # each list gets its own kind
    agents, items = whole_problem.agent, whole_problem.item
    pair_value = {(int(a), int(j)): v for a, j, v in zip(agents, items, pairs.score, strict=True)}
    assert merged.value == pytest.approx(sum(pair_value[(int(a), int(merged.assignment[a]))] for a in assigned))


def test_merge_needs_something_to_merge() -> None:
    with pytest.raises(ValueError, match="nothing"):
        merge_allocations([], 3)


def test_worker_peak_rss_is_this_process_high_water_mark() -> None:
    peak = worker_peak_rss()
    ballast = np.ones(64 * 1024**2 // 8)  # 64 MiB touched
    assert peak > 10 * 1024**2
    assert worker_peak_rss() >= peak
    del ballast
