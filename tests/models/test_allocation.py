"""The capacity-constrained allocation: known optima, prices, and the serving rule it justifies."""

from __future__ import annotations

import itertools
from datetime import date

import numpy as np
import pytest

from models.allocation import (
    SOLVERS,
    AllocationError,
    AllocationProblem,
    _mid_prices,
    adjusted_scores,
    capacity_of,
    solve,
)
from tests.factories import make_opportunity


def _brute_force(problem: AllocationProblem) -> float:
    """Best total value by enumerating every assignment (tiny problems only)."""
    value = {(int(a), int(j)): float(v) for a, j, v in zip(problem.agent, problem.item, problem.value, strict=True)}
    options = [[-1] + [j for (a, j) in value if a == agent] for agent in range(problem.n_agents)]
    best = 0.0
    for choice in itertools.product(*options):
        taken = np.bincount([j for j in choice if j >= 0], minlength=problem.n_items)
        if np.all(taken <= problem.capacity):
            best = max(best, sum(value[(a, j)] for a, j in enumerate(choice) if j >= 0))
    return best


def test_one_seat_goes_to_the_client_who_gains_most_and_is_priced_between_the_two_values() -> None:
    problem = AllocationProblem.build([0, 1], [0, 0], [3.0, 1.0], [1], n_agents=2)
    result = solve(problem)
    assert result.assignment.tolist() == [0, -1]
    assert result.value == pytest.approx(3.0)
    assert 1.0 <= result.prices[0] <= 3.0  # the loser would not pay it, the winner would
    assert result.prices[0] == pytest.approx(2.0)  # the middle of the equilibrium interval


def test_hand_computed_optimum_sends_the_flexible_client_to_the_roomier_item() -> None:
    # a0 likes A 5 / B 4, a1 likes A 5 / B 1, a2 only B 2; A has 1 seat, B has 2.
    # Best: a1 -> A, a0 -> B, a2 -> B = 11 (a0 -> A would give 5 + 1 + 2 = 8).
    problem = AllocationProblem.build([0, 0, 1, 1, 2], [0, 1, 0, 1, 1], [5, 4, 5, 1, 2], [1, 2], n_agents=3)
    result = solve(problem, "highs")
    assert result.assignment.tolist() == [1, 0, 1]
    assert result.value == pytest.approx(11.0)
    assert result.overfilled == 0


def test_prices_make_every_allocated_item_each_agents_best_net_choice() -> None:
    rng = np.random.default_rng(3)
    a, j = np.nonzero(rng.random((40, 8)) < 0.6)
    v = rng.random(a.size) + np.linspace(0, 1, 8)[j]
    problem = AllocationProblem.build(a, j, v, rng.integers(0, 6, 8), n_agents=40)
    result = solve(problem)
    open_pair = problem.capacity[j] > 0  # items without seats cannot be had at any price
    net = np.where(open_pair, v - result.prices[j], -np.inf)
    for agent in range(40):
        mine = net[a == agent]
        got = result.assignment[agent]
        best = max(mine.max(initial=0.0), 0.0)
        if got >= 0:
            assert net[(a == agent) & (j == got)][0] == pytest.approx(best, abs=1e-6)
        else:
            assert best <= 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_lp_reaches_the_brute_force_optimum_on_small_random_problems(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, j = np.nonzero(rng.random((5, 3)) < 0.7)
    problem = AllocationProblem.build(a, j, rng.normal(1.0, 1.0, a.size), rng.integers(0, 3, 3), n_agents=5)
    result = solve(problem, "highs")
    assert result.value == pytest.approx(_brute_force(problem), abs=1e-9)
    taken = np.bincount(result.assignment[result.assignment >= 0], minlength=3)
    assert np.all(taken <= problem.capacity)


@pytest.mark.parametrize("solver", SOLVERS)
def test_items_with_room_for_everyone_who_wants_them_have_price_zero(solver: str) -> None:
    # item 0: 1 seat, wanted by 3; item 1: 10 seats, wanted by 3 (never binding).
    problem = AllocationProblem.build([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [3, 1, 2, 1, 2.5, 1], [1, 10], 3)
    result = solve(problem, solver)  # type: ignore[arg-type]
    assert result.prices[1] == pytest.approx(0.0, abs=1e-6)
    assert result.prices[0] > 0.5
    assert result.assignment[0] == 0


def test_sinkhorn_comes_close_to_the_lp_optimum_on_a_small_case() -> None:
    rng = np.random.default_rng(1)
    a, j = np.nonzero(rng.random((30, 6)) < 0.7)
    problem = AllocationProblem.build(a, j, rng.random(a.size) + 0.2, [2, 2, 3, 10, 1, 4], n_agents=30)
    exact, entropic = solve(problem, "highs"), solve(problem, "sinkhorn")
    assert entropic.value == pytest.approx(exact.value, rel=0.1)


def test_worthless_pairs_are_never_allocated() -> None:
    problem = AllocationProblem.build([0, 1], [0, 0], [-1.0, 0.0], [5], n_agents=2)
    result = solve(problem)
    assert result.assignment.tolist() == [-1, -1]
    assert result.prices.tolist() == [0.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agent": [0, 1], "item": [0], "value": [1.0]}, "one entry per pair"),
        ({"agent": [0], "item": [3], "value": [1.0]}, "item indices"),
        ({"agent": [0], "item": [0], "value": [np.nan]}, "finite"),
        ({"agent": [0, 0], "item": [0, 0], "value": [1.0, 2.0]}, "once"),
    ],
)
def test_malformed_problems_are_refused_naming_the_field(kwargs: dict[str, list[float]], message: str) -> None:
    with pytest.raises(AllocationError, match=message):
        AllocationProblem.build(capacity=[1], n_agents=2, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(AllocationError, match="capacity"):
        AllocationProblem.build([0], [0], [1.0], [-1], n_agents=1)
    with pytest.raises(AllocationError, match="solver"):
        solve(AllocationProblem.build([0], [0], [1.0], [1], n_agents=1), "simplex")  # type: ignore[arg-type]


def test_capacity_is_the_free_seats_of_the_next_intake() -> None:
    on = date(2026, 3, 1)
    assert capacity_of(make_opportunity(seats=5, seats_taken=2), on) == 3
    gone = make_opportunity(intake={"continuous": False, "dates": ["2026-01-15"]}, seats=5)
    assert capacity_of(gone, on) == 0


def test_adjusted_scores_subtract_the_price_of_each_position() -> None:
    out = adjusted_scores([1.0, 2.0], [2, 0], np.array([0.5, 0.0, 0.25]))
    assert out.tolist() == [0.75, 1.5]
    assert adjusted_scores([1.0], [0], None).tolist() == [1.0]


def test_prices_survive_an_optimum_that_is_exact_only_within_the_solvers_tolerance() -> None:
    # two clients, two one-seat items; swapping them gains 1e-9, below HiGHS's tolerance. Given the (tolerably)
    # suboptimal assignment, the exact price constraints contradict each other by 1e-9 (a negative cycle): the
    # prices are found with a slack instead of failing, and still send each client to the item they were given.
    a = np.array([0, 0, 1, 1])
    j = np.array([0, 1, 0, 1])
    v = np.array([1.0, 0.5, 1.0, 0.5 + 1e-9])
    assignment = np.array([1, 0])
    prices = _mid_prices(a, j, v, assignment, np.array([True, True]))
    assert np.all(prices >= 0)
    # client 0 (on item 1) and client 1 (on item 0) each prefer their own item by the prices, within the slack
    assert v[1] - prices[1] >= v[0] - prices[0] - 1e-6
    assert v[2] - prices[0] >= v[3] - prices[1] - 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_reweighted_price_search_gives_the_bellman_ford_prices(seed: int) -> None:
    # Dijkstra on weights reduced by the solver's duals (what solve_lp runs) and plain Bellman-Ford agree
    rng = np.random.default_rng(seed)
    n_agents, n_items = 60, 12
    pairs = {
        (int(a), int(j)) for a, j in zip(rng.integers(0, n_agents, 400), rng.integers(0, n_items, 400), strict=True)
    }
    agent, item = (np.array(x) for x in zip(*sorted(pairs), strict=True))
    value = np.round(rng.uniform(0.1, 2.0, agent.size), 3)
    problem = AllocationProblem.build(agent, item, value, rng.integers(0, 4, n_items), n_agents)
    solved = solve(problem)
    assert solved.binding.any()
    seats = np.floor(problem.capacity)
    taken = np.bincount(solved.assignment[solved.assignment >= 0], minlength=n_items)
    keep = (problem.value > 0) & (seats[problem.item] > 0)
    plain = _mid_prices(
        problem.agent[keep], problem.item[keep], problem.value[keep], solved.assignment, (taken >= seats) & (seats > 0)
    )
    np.testing.assert_allclose(solved.prices, plain, atol=1e-9)
