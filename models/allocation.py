"""Capacity-constrained allocation of clients to items, with congestion prices (the nightly batch's solver).

The problem: agents ``a`` (a client, or one client's list of one kind), items ``j`` with free seats ``c_j``, and
the expected value ``v_aj`` of every eligible pair. Choose ``x_aj >= 0`` maximising ``sum v_aj x_aj`` subject to
``sum_j x_aj <= 1`` (one item per agent, or none) and ``sum_a x_aj <= c_j`` (seats). The dual variable ``p_j >= 0``
of an item's seat constraint is its **congestion price**: at the optimum every agent's allocated item maximises
``v_aj - p_j`` (and is worth taking, ``v_aj - p_j >= 0``), so subtracting prices from scores before sorting
points each client to the item the allocation would give them. By complementary slackness an item with seats to
spare has price 0, and only items that more clients want than it can take are priced.

Two solvers are offered (``polku allocate --solver``):

- ``highs`` (default): the linear programme above with SciPy's HiGHS (dual simplex) on the sparse eligible
  pairs. Exact optimum; the seat constraints are totally unimodular, so the optimal vertex is integral (a
  per-client allocation, no rounding); prices are the exact duals, exactly 0 on non-binding items.
- ``sinkhorn``: entropic optimal transport (POT's log-domain Sinkhorn, the approach of France Travail's
  congestion work). Balanced by a "no item" column (room for every agent) and an "empty seat" row (room for
  every seat); prices are the item potentials relative to the "no item" column. It needs the dense agent x
  item matrix, its plan is fractional (the allocation takes each agent's heaviest item, which can overfill a
  seat), and its prices are blurred by the regularisation (small positive prices on items with room).

Why ``highs``: on the default world's centres it reaches the exact optimum in well under a second, memory is
linear in eligible pairs, and the prices are the ones the serving rule needs (zero where there is room). The
measured comparison (value, seconds, overfilled seats) is in ``benchmarks/congestion.py`` and the runbook (§12).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from features.records import Opportunity

Solver = Literal["highs", "sinkhorn"]
SOLVERS: Final[tuple[Solver, ...]] = ("highs", "sinkhorn")
logger = logging.getLogger(__name__)
PRICE_EPS: Final = 1e-9
"""Prices below this are reported as 0 (solver round-off)."""
PRICE_TOLERANCE: Final = 1e-7
"""Relative slack first allowed in the price constraints when the solver's vertex is optimal only within its
tolerance (HiGHS stops within ~1e-7: on large problems of nearly tied values the exact constraints then form a
negative cycle); raised tenfold up to three times before giving up."""


class AllocationError(ValueError):
    """The allocation problem is malformed (lengths, negative capacity, non-finite values) or the solver failed."""


def capacity_of(opportunity: Opportunity, on: date) -> int:
    """Free seats of an item for the allocation at day ``on``.

    Seats and ``seats_taken`` describe the item's next intake (the record has one seat count), so the capacity
    is ``seats - seats_taken`` when the item still has an intake on or after ``on`` (or admits continuously),
    and 0 when it has none left: nobody can be sent to an item that no longer starts.
    """
    if opportunity.intake.next_start(on) is None:
        return 0
    return max(opportunity.seats - opportunity.seats_taken, 0)


@dataclass(frozen=True)
class AllocationProblem:
    """Eligible pairs with their expected values, and seats per item.

    Attributes:
        agent: agent index per pair (0 .. n_agents - 1).
        item: item index per pair (0 .. n_items - 1).
        value: expected value per pair (finite; pairs worth less than nothing are never allocated).
        capacity: free seats per item (>= 0).
        n_agents: number of agents (some may have no pairs).
    """

    agent: npt.NDArray[np.int64]
    item: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    capacity: npt.NDArray[np.float64]
    n_agents: int

    @classmethod
    def build(
        cls, agent: npt.ArrayLike, item: npt.ArrayLike, value: npt.ArrayLike, capacity: npt.ArrayLike, n_agents: int
    ) -> AllocationProblem:
        """Validate and normalise the arrays.

        Raises:
            AllocationError: lengths differ, an index is out of range, a pair repeats, a value is not finite, or a
                capacity is negative.
        """
        a = np.asarray(agent, dtype=np.int64).reshape(-1)
        j = np.asarray(item, dtype=np.int64).reshape(-1)
        v = np.asarray(value, dtype=np.float64).reshape(-1)
        c = np.asarray(capacity, dtype=np.float64).reshape(-1)
        if not (a.size == j.size == v.size):
            raise AllocationError("agent, item and value must have one entry per pair")
        if a.size and (a.min() < 0 or a.max() >= n_agents):
            raise AllocationError(f"agent indices must lie in 0..{n_agents - 1}")
        if j.size and (j.min() < 0 or j.max() >= c.size):
            raise AllocationError(f"item indices must lie in 0..{c.size - 1} (one capacity per item)")
        if not np.all(np.isfinite(v)):
            raise AllocationError("value: every pair needs a finite expected value")
        if np.any(c < 0) or not np.all(np.isfinite(c)):
            raise AllocationError("capacity: seats must be finite and >= 0")
        if a.size and np.unique(a * c.size + j).size != a.size:
            raise AllocationError("each (agent, item) pair may appear once")
        return cls(a, j, v, c, int(n_agents))

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.capacity.size)


@dataclass(frozen=True)
class Allocation:
    """A solved allocation.

    Attributes:
        prices: congestion price per item (>= 0, in the units of the values).
        assignment: item per agent, -1 for none.
        value: total expected value of ``assignment``.
        overfilled: seats allocated beyond capacity (0 for ``highs``; Sinkhorn's rounding can overfill).
        solver: which solver produced it.
        seconds: wall time of the solve.
    """

    prices: npt.NDArray[np.float64]
    assignment: npt.NDArray[np.int64]
    value: float
    overfilled: int
    solver: str
    seconds: float

    @property
    def binding(self) -> npt.NDArray[np.bool_]:
        """Items with a positive price."""
        return self.prices > 0


def solve(problem: AllocationProblem, solver: Solver = "highs", **options: float) -> Allocation:
    """Solve with the named solver (``highs`` or ``sinkhorn``; options go to the solver).

    Raises:
        AllocationError: unknown solver, or the solver failed.
    """
    if solver == "highs":
        return solve_lp(problem)
    if solver == "sinkhorn":
        return solve_sinkhorn(problem, **options)
    raise AllocationError(f"solver: one of {', '.join(SOLVERS)}, not {solver!r}")


def _finish(problem: AllocationProblem, assignment: npt.NDArray[np.int64]) -> float:
    lookup = {(int(a), int(j)): float(v) for a, j, v in zip(problem.agent, problem.item, problem.value, strict=True)}
    return float(sum(lookup[(a, int(j))] for a, j in enumerate(assignment) if j >= 0))


def _overfilled(problem: AllocationProblem, assignment: npt.NDArray[np.int64]) -> int:
    taken = np.bincount(assignment[assignment >= 0], minlength=problem.n_items).astype(np.float64)
    return int(np.maximum(taken - np.floor(problem.capacity), 0).sum())


def solve_lp(problem: AllocationProblem) -> Allocation:
    """The exact optimum and prices by linear programming (SciPy ``linprog``, HiGHS dual simplex).

    Pairs with a value <= 0 cannot raise the total, so they are left out (prices stay duals of the full problem:
    an agent never wants an item at a price that leaves it a non-positive surplus); so are items without seats
    (price 0: serving excludes them anyway, and no price would be meaningful).

    Raises:
        AllocationError: HiGHS reports a failure.
    """
    from scipy import sparse
    from scipy.optimize import linprog

    start = time.perf_counter()
    seats = np.floor(problem.capacity)
    keep = (problem.value > 0) & (seats[problem.item] > 0)  # no seats: never allocated, reported at price 0
    a, j, v = problem.agent[keep], problem.item[keep], problem.value[keep]
    n, m, p = problem.n_agents, problem.n_items, int(keep.sum())
    prices = np.zeros(m, dtype=np.float64)
    assignment = np.full(n, -1, dtype=np.int64)
    if p == 0:
        return Allocation(prices, assignment, 0.0, 0, "highs", time.perf_counter() - start)
    cols = np.arange(p)
    rows = np.r_[a, n + j]
    a_ub = sparse.csr_array((np.ones(2 * p), (rows, np.r_[cols, cols])), shape=(n + m, p))
    b_ub = np.r_[np.ones(n), np.floor(problem.capacity)]
    res = linprog(-v, A_ub=a_ub, b_ub=b_ub, bounds=(0, 1), method="highs-ds")
    if res.status != 0 or res.x is None:
        raise AllocationError(f"HiGHS could not solve the allocation: {res.message}")
    x = np.asarray(res.x)
    chosen = x > 0.5
    assignment[a[chosen]] = j[chosen]
    value = float(v[chosen].sum())
    taken = np.bincount(assignment[assignment >= 0], minlength=m)
    marginals = getattr(getattr(res, "ineqlin", None), "marginals", None)
    duals = None if marginals is None else -np.asarray(marginals, dtype=np.float64)[n:]  # HiGHS's optimal prices
    if duals is not None and not np.all(np.isfinite(duals)):
        duals = None  # no usable potential: Bellman-Ford on the raw constraints instead
    full = (taken >= seats) & (seats > 0)
    prices = _mid_prices(a, j, v, assignment, full, potential=duals)  # 0 where seats are left or none
    return Allocation(prices, assignment, value, _overfilled(problem, assignment), "highs", time.perf_counter() - start)


def _mid_prices(
    a: npt.NDArray[np.int64],
    j: npt.NDArray[np.int64],
    v: npt.NDArray[np.float64],
    assignment: npt.NDArray[np.int64],
    full_item: npt.NDArray[np.bool_],
    *,
    potential: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """The middle of the equilibrium price interval: mean of the least and the greatest optimal dual prices.

    Optimal duals are not unique. The least prices leave agents indifferent between a full item and their
    alternative, so a stable sort would keep the full item first; the greatest push every agent off it. Their
    mean is optimal too (the optimal dual set is convex) and splits agents by how much more they gain from the
    full item.

    Given the optimal assignment, the optimal prices are exactly the solutions of difference constraints
    (complementary slackness): an assigned agent ``a`` on item ``s`` keeps ``v_as - p_s >= v_ak - p_k`` for its
    other items and ``v_as - p_s >= 0``; an unassigned agent has ``p_k >= v_ak``; items with seats left have
    ``p = 0``; all prices ``>= 0``. On the graph with an edge ``y -> x`` of weight ``w`` for ``p_x <= p_y + w``
    and a zero-price node, the greatest prices are the shortest distances from that node and the least ones
    minus the shortest distances to it (Bellman-Ford; milliseconds where a second and third LP took seconds).

    With ``potential`` (any optimal price vector, e.g. the solver's duals: it satisfies every constraint, so the
    edges' reduced weights ``w + p_from - p_to`` are >= 0) both searches run Dijkstra on the reduced weights
    (Johnson's reweighting): the same distances in O(E log V) instead of Bellman-Ford's O(V E), which took
    minutes on a centre of 100k clients. Reduced weights below 0 by the solver's tolerance are taken as 0.
    Without a potential (the reference, and the fallback when the solver reports no duals), Bellman-Ford runs on
    the constraints as they are, with a slack of the solver's tolerance if they form a negative cycle.
    """
    from scipy import sparse
    from scipy.sparse.csgraph import NegativeCycleError, shortest_path

    m = full_item.size
    s = assignment[a]
    own = np.full(assignment.size, np.nan)
    mine = s == j
    own[a[mine]] = v[mine]
    other = (s >= 0) & ~mine
    unassigned = s < 0
    agents = np.flatnonzero(assignment >= 0)
    items = np.arange(m)
    full, spare = items[full_item], items[~full_item]
    top = float(v.max()) if v.size else 0.0
    edges = [  # (from, to, weight): p_to <= p_from + weight; node 0 is the zero price, item k is node k + 1
        (1 + j[other], 1 + s[other], own[a[other]] - v[other]),  # assigned agents keep preferring their item
        (np.zeros(agents.size, np.int64), 1 + assignment[agents], own[agents]),  # ... to nothing at all
        (1 + j[unassigned], np.zeros(int(unassigned.sum()), np.int64), -v[unassigned]),  # p_k >= v_ak
        (np.zeros(spare.size, np.int64), 1 + spare, np.zeros(spare.size)),  # seats left: p = 0
        (1 + items, np.zeros(m, np.int64), np.zeros(m)),  # p >= 0
        (np.zeros(full.size, np.int64), 1 + full, np.full(full.size, top)),  # a bound where nothing else binds
    ]
    src = np.concatenate([e[0] for e in edges])
    dst = np.concatenate([e[1] for e in edges])
    w = np.concatenate([e[2] for e in edges]).astype(np.float64)
    key = src * (m + 1) + dst
    order = np.lexsort((w, key))
    key, w = key[order], w[order]
    first = np.r_[True, key[1:] != key[:-1]]  # the tightest constraint per edge
    key, w = key[first], w[first]
    rows, cols = key // (m + 1), key % (m + 1)
    if potential is not None:
        return _mid_prices_reweighted(rows, cols, w, np.r_[0.0, np.asarray(potential, dtype=np.float64)], full_item)
    slack = 0.0
    for slack in (0.0, *(PRICE_TOLERANCE * max(top, 1.0) * 10.0**e for e in range(4))):
        graph = sparse.csr_array((w + slack, (rows, cols)), shape=(m + 1, m + 1))
        try:
            greatest = shortest_path(graph, method="BF", directed=True, indices=0)[1:]
            least = -shortest_path(graph.T.tocsr(), method="BF", directed=True, indices=0)[1:]
            break
        except NegativeCycleError:  # the solver's vertex is optimal only within its tolerance
            continue
    else:
        raise AllocationError("no congestion prices: the allocation is not optimal within 1e-4 of the top value")
    if slack:
        logger.info("congestion prices with a slack of %.3g per constraint (solver tolerance)", slack)
    prices = np.maximum((np.maximum(least, 0.0) + greatest) / 2, 0.0)
    prices[~full_item] = 0.0
    return prices


def _mid_prices_reweighted(
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    w: npt.NDArray[np.float64],
    pi: npt.NDArray[np.float64],
    full_item: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """:func:`_mid_prices`' two searches with Dijkstra on weights reduced by the potential ``pi`` (node 0 first)."""
    from scipy import sparse
    from scipy.sparse.csgraph import dijkstra

    size = pi.size
    reduced = np.maximum(w + pi[rows] - pi[cols], 0.0)
    graph = sparse.csr_array((reduced, (rows, cols)), shape=(size, size))
    greatest = dijkstra(graph, directed=True, indices=0)[1:] + pi[1:] - pi[0]
    least = pi[1:] - pi[0] - dijkstra(graph.T.tocsr(), directed=True, indices=0)[1:]
    prices = np.maximum((np.maximum(least, 0.0) + greatest) / 2, 0.0)
    prices[~full_item] = 0.0
    return np.where(np.isfinite(prices), prices, 0.0)


def solve_sinkhorn(problem: AllocationProblem, *, reg: float = 0.01, max_iter: float = 5000) -> Allocation:
    """Entropic optimal transport (POT ``sinkhorn_log``) with a "no item" column and an "empty seat" row.

    Args:
        problem: the allocation problem.
        reg: entropic regularisation relative to the value range (smaller: closer to the LP, slower).
        max_iter: Sinkhorn iterations at most.

    Returns:
        Prices from the item potentials relative to the "no item" column, and each agent's heaviest item.
    """
    import ot

    start = time.perf_counter()
    n = problem.n_agents
    seats_all = np.floor(problem.capacity)
    open_items = np.flatnonzero(seats_all > 0)  # items without seats take nobody (and would put log(0) in Sinkhorn)
    column = np.full(problem.n_items, -1, dtype=np.int64)
    column[open_items] = np.arange(open_items.size)
    keep = column[problem.item] >= 0
    agents, cols, values = problem.agent[keep], column[problem.item[keep]], problem.value[keep]
    m = int(open_items.size)
    scale = float(np.abs(values).max()) if values.size else 1.0
    scale = scale if scale > 0 else 1.0
    forbidden = 1e3  # cost of an ineligible pair, in value-scale units (exp(-forbidden/reg) is 0)
    cost = np.full((n + 1, m + 1), forbidden, dtype=np.float64)
    cost[agents, cols] = -values / scale
    cost[:n, m] = 0.0  # "no item" column
    cost[n, :] = 0.0  # "empty seat" row
    seats = seats_all[open_items]
    a = np.r_[np.ones(n), float(seats.sum())]
    b = np.r_[seats, float(n)]
    cost -= cost.min()
    plan, log = ot.bregman.sinkhorn_log(a, b, cost, reg, numItermax=int(max_iter), log=True, warn=False)
    g = np.asarray(log["log_v"], dtype=np.float64) * reg
    # Agent a prefers argmin_j cost_aj - g_j = argmax_j v_aj + g_j: the price of j is g_none - g_j (value units).
    prices = np.zeros(problem.n_items, dtype=np.float64)
    prices[open_items] = np.maximum((g[m] - g[:m]) * scale, 0.0)
    prices[prices < PRICE_EPS * scale] = 0.0
    heaviest = np.asarray(plan[:n].argmax(axis=1), dtype=np.int64)
    eligible = np.zeros((n, m + 1), dtype=bool)
    eligible[agents, cols] = True
    chosen = (heaviest < m) & eligible[np.arange(n), heaviest]
    assignment = np.where(chosen, open_items[np.minimum(heaviest, max(m - 1, 0))] if m else -1, -1).astype(np.int64)
    value = _finish(problem, assignment)
    return Allocation(
        prices, assignment, value, _overfilled(problem, assignment), "sinkhorn", time.perf_counter() - start
    )


def adjusted_scores(
    scores: npt.ArrayLike, item_idx: npt.ArrayLike, prices: npt.ArrayLike | None
) -> npt.NDArray[np.float64]:
    """Scores minus the congestion price of each scored item (``prices`` by catalogue position; None: unchanged)."""
    s = np.asarray(scores, dtype=np.float64)
    if prices is None:
        return s
    return s - np.asarray(prices, dtype=np.float64)[np.asarray(item_idx, dtype=np.int64)]
