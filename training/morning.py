"""A centre's morning under seat capacity: plain ranking against congestion-aware ranking, in the world.

Simulation (evaluation only: it grades with the world's truth). For each centre, the test cohort's clients are the
morning's clients and the centre's catalogue at the test reference date is what they can take, with the seats of
the next intake (:func:`models.allocation.capacity_of`). The champion scores every eligible pair exactly as
serving does (:func:`models.batch.score_clients`); the nightly allocation prices the items
(:mod:`models.allocation`, as ``polku allocate`` does). Then the clients arrive in random order. Each sees, per
kind, the top ``slate`` items of the list computed at the start of the morning (plain: by score; congestion-aware:
by score minus price) and takes at most one of the items that still has a seat, by the world's choice model
(the multinomial logit of ``training.world.history``: true utility, degree-route and apprenticeship biases,
position bias, against the kind's "none" option). A taken item loses a seat; a full item can no longer be taken.
Both policies see the same arrival orders and the same Gumbel draws (common random numbers).

Reported per policy: realised total expected utility (true utility of the items taken), the share of lists whose
first suggestion was already full on arrival, congestion@10 and coverage@10 of the lists, and NDCG@10 against
the true relevance without capacity; plus the mean per-list NDCG@10 loss of congestion-aware ranking.

The **ceiling** runs both policies again with the world's true utility in place of the model's scores (the lists,
the allocation's values and so its prices): what subtracting prices from scores can achieve in this world with a
perfect model. A target the ceiling misses too is out of reach of the price rule itself, not of the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.records import KINDS, ROUTES
from models.allocation import AllocationProblem, Solver, solve
from models.batch import allocation_problem, score_clients
from models.package import PolkuModel
from training.datasets import cohort_reference_date, time_split
from training.metrics import congestion_at_k, coverage_at_k, ndcg_per_query
from training.world import calibrate as cal
from training.world.generate import World
from training.world.history import POSITION_BIAS

METRIC_K: Final = 10
POLICIES: Final = ("plain", "congestion_aware")
TARGETS: Final = {
    "full_first_share_ratio_max": 0.5,
    "congestion_at_10_drop_min": 0.30,
    "utility_gain_min": 0.05,
    "ndcg_at_10_loss_max": 0.02,
}


@dataclass(frozen=True)
class MorningConfig:
    """Simulation settings.

    Attributes:
        slate: suggestions per kind a client sees (the API's default ``k``).
        repeats: arrival orders simulated (results are means over them).
        seed: seed of arrival orders and choice draws.
        solver: allocation solver for the prices.
    """

    slate: int = 5
    repeats: int = 5
    seed: int = 0
    solver: Solver = "highs"


@dataclass(frozen=True)
class _Lists:
    """Top-``METRIC_K`` items per (client, kind) agent under one policy (-1 pads short lists)."""

    items: npt.NDArray[np.int64]  # (n_agents, METRIC_K)
    scores: npt.NDArray[np.float64]  # the policy's ordering score of the same cells


def _top_lists(
    item: npt.NDArray[np.int64], agent: npt.NDArray[np.int64], order_by: npt.NDArray[np.float64], n: int
) -> _Lists:
    order = np.lexsort((np.arange(agent.size), -order_by, agent))
    a = agent[order]
    starts = np.searchsorted(a, np.arange(n))
    rank = np.arange(a.size) - starts[a]
    keep = rank < METRIC_K
    items = np.full((n, METRIC_K), -1, dtype=np.int64)
    scores = np.full((n, METRIC_K), np.nan)
    items[a[keep], rank[keep]] = item[order][keep]
    scores[a[keep], rank[keep]] = order_by[order][keep]
    return _Lists(items, scores)


def _list_metrics(lists: _Lists, relevance: dict[tuple[int, int], float], n_items: int) -> dict[str, Any]:
    agent, slot = np.nonzero(lists.items >= 0)
    item = lists.items[agent, slot]
    score = -slot.astype(np.float64)  # list order is the ranking
    rel = np.array([relevance[(int(a), int(i))] for a, i in zip(agent, item, strict=True)])
    return {
        "congestion_at_10": congestion_at_k(score, agent, item, METRIC_K, n_items=max(n_items, 2)),
        "coverage_at_10": coverage_at_k(score, agent, item, METRIC_K, n_items=max(n_items, 1)),
        "ndcg_per_list": ndcg_per_query(rel, score, agent, METRIC_K, empty_as_zero=True),
    }


def _morning(
    lists: _Lists,
    seats: npt.NDArray[np.float64],
    utility: dict[tuple[int, int], float],
    taste: dict[tuple[int, int], float],
    none_logit: npt.NDArray[np.float64],
    slate: int,
    order: npt.NDArray[np.int64],
    gumbel: npt.NDArray[np.float64],
) -> tuple[float, int, int, int]:
    """One arrival order: (realised utility, lists whose first item was full, lists shown, items taken)."""
    left = seats.copy()
    total, first_full, shown, taken = 0.0, 0, 0, 0
    n_kinds = len(KINDS)
    for client in order:
        for k in range(n_kinds):
            agent = int(client) * n_kinds + k
            row = lists.items[agent, :slate]
            row = row[row >= 0]
            if row.size == 0:
                continue
            shown += 1
            first_full += int(left[row[0]] <= 0)
            z = np.array([taste[(agent, int(i))] for i in row]) + POSITION_BIAS * np.arange(row.size)
            z = np.where(left[row] > 0, z + gumbel[agent, : row.size], -np.inf)
            best = int(np.argmax(z))
            if z[best] > none_logit[k] + gumbel[agent, -1]:
                item = int(row[best])
                left[item] -= 1
                total += utility[(agent, item)]
                taken += 1
    return total, first_full, shown, taken


def simulate_centre(world: World, model: PolkuModel, centre: str, config: MorningConfig) -> dict[str, Any]:
    """The morning of one centre: both policies, with the allocation's prices and timings, and their ceiling.

    The ceiling runs the same two policies with the world's true utility in place of the model's scores (the
    lists, the allocation's values and so its prices): what the price rule could do with a perfect model.
    """
    split = time_split(world)
    on: date = cohort_reference_date(split.test_cohort)
    test = set(split.test_client_ids)
    c_pos = [p for p, c in enumerate(world.clients) if c.client_id in test and c.centre == centre]
    o_pos = [p for p, o in enumerate(world.opportunities) if o.centre == centre]
    clients = [world.clients[p] for p in c_pos]
    opps = [world.opportunities[p] for p in o_pos]
    start = time.perf_counter()
    pairs = score_clients(model, clients, opps, on)
    problem = allocation_problem(pairs, len(clients), opps, on)
    scored = time.perf_counter()
    allocation = solve(problem, config.solver)
    u = world.truth.utility_at(np.asarray(c_pos)[pairs.row], np.asarray(o_pos)[pairs.item])
    route = np.array([ROUTES.index(o.route) if o.route else -1 for o in opps])
    behaviour = world.manifest.get("behaviour", {})
    taste_arr = (
        u
        + float(behaviour.get("degree_bias", 0.0))
        * np.isin(route[pairs.item], [ROUTES.index(r) for r in cal.DEGREE_ROUTES])
        + float(behaviour.get("apprenticeship_bias", 0.0)) * (route[pairs.item] == ROUTES.index("apprenticeship"))
    )
    keys = list(zip(problem.agent.tolist(), pairs.item.tolist(), strict=True))
    morning = _Morning(
        agent=problem.agent,
        item=pairs.item,
        n_agents=problem.n_agents,
        capacity=problem.capacity,
        n_items=len(opps),
        utility=dict(zip(keys, u.tolist(), strict=True)),
        taste=dict(zip(keys, taste_arr.tolist(), strict=True)),
        relevance=dict(zip(keys, world.truth.relevance_of(u).astype(float).tolist(), strict=True)),
        none_logit=np.array([float(behaviour.get(f"none_{k}", 0.0)) for k in KINDS]),
        slate=config.slate,
        draws=_draws(len(clients), problem.n_agents, config),
    )
    out: dict[str, Any] = {
        "centre": centre,
        "clients": len(clients),
        "items": len(opps),
        "seats": int(problem.capacity.sum()),
        "priced_items": int(allocation.binding.sum()),
        "score_seconds": scored - start,
        "solve_seconds": allocation.seconds,
    }
    out.update(morning.policies(pairs.score, allocation.prices[pairs.item]))
    truth_problem = AllocationProblem.build(problem.agent, problem.item, u, problem.capacity, problem.n_agents)
    ceiling_prices = solve(truth_problem, config.solver).prices[pairs.item]
    out["ceiling"] = morning.policies(u, ceiling_prices)
    return out


def _draws(
    n_clients: int, n_agents: int, config: MorningConfig
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
    """Arrival orders and choice noise, shared by every policy (common random numbers)."""
    rng = np.random.default_rng(config.seed)
    return [(rng.permutation(n_clients), rng.gumbel(size=(n_agents, config.slate + 1))) for _ in range(config.repeats)]


@dataclass(frozen=True)
class _Morning:
    """One centre's morning: the scored pairs' truth and the shared draws; runs policies given as scores."""

    agent: npt.NDArray[np.int64]
    item: npt.NDArray[np.int64]
    n_agents: int
    capacity: npt.NDArray[np.float64]
    n_items: int
    utility: dict[tuple[int, int], float]
    taste: dict[tuple[int, int], float]
    relevance: dict[tuple[int, int], float]
    none_logit: npt.NDArray[np.float64]
    slate: int
    draws: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]

    def policies(self, scores: npt.NDArray[np.float64], prices: npt.NDArray[np.float64]) -> dict[str, Any]:
        """Plain (by ``scores``) and congestion-aware (by ``scores - prices``, per pair) with the NDCG loss."""
        orders = {"plain": scores, "congestion_aware": scores - prices}
        out: dict[str, Any] = {}
        ndcg: dict[str, npt.NDArray[np.float64]] = {}
        for policy, order_by in orders.items():
            lists = _top_lists(self.item, self.agent, order_by, self.n_agents)
            metrics = _list_metrics(lists, self.relevance, self.n_items)
            ndcg[policy] = metrics.pop("ndcg_per_list")
            runs = [
                _morning(lists, self.capacity, self.utility, self.taste, self.none_logit, self.slate, o, g)
                for o, g in self.draws
            ]
            util, full, shown, taken = (np.array(x, dtype=np.float64) for x in zip(*runs, strict=True))
            out[policy] = {
                **metrics,
                "ndcg_at_10": float(np.mean(ndcg[policy])),
                "utility": float(util.mean()),
                "full_first_share": float((full / np.maximum(shown, 1)).mean()),
                "lists": float(shown.mean()),
                "taken": float(taken.mean()),
            }
        out["ndcg_loss_per_list"] = ndcg["plain"] - ndcg["congestion_aware"]
        return out


def simulate_morning(
    world: World, model: PolkuModel, config: MorningConfig | None = None, *, centres: list[str] | None = None
) -> dict[str, Any]:
    """Every centre's morning (or the named ones), summed: the report section ``morning`` (plain vs aware).

    Returns:
        Per policy the totals and means over centres, the relative changes, the targets and whether they are met,
        and the per-centre details.
    """
    cfg = config or MorningConfig()
    names = centres or sorted({o.centre for o in world.opportunities})
    per_centre = [simulate_centre(world, model, c, cfg) for c in names]
    summary = _summarise(per_centre)
    ceiling = _summarise([c["ceiling"] for c in per_centre])
    change = summary.pop("change")
    met = {
        "full_first_share_halves": change["full_first_share_ratio"] <= TARGETS["full_first_share_ratio_max"],
        "congestion_falls_30pct": change["congestion_at_10_drop"] >= TARGETS["congestion_at_10_drop_min"],
        "utility_rises_5pct": change["utility_gain"] >= TARGETS["utility_gain_min"],
        "ndcg_loss_at_most_0_02": change["ndcg_at_10_loss"] <= TARGETS["ndcg_at_10_loss_max"],
    }
    return {
        "config": {"slate": cfg.slate, "repeats": cfg.repeats, "seed": cfg.seed, "solver": cfg.solver},
        **summary,
        "change": change,
        "targets": dict(TARGETS),
        "met": met,
        "ceiling": ceiling,
        "centres": per_centre,
    }


def _summarise(per_centre: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and list-weighted means over centres per policy, and the changes (pops the per-list losses)."""
    losses = np.concatenate([c.pop("ndcg_loss_per_list") for c in per_centre])
    weights = np.array([c["plain"]["lists"] for c in per_centre])
    summary: dict[str, Any] = {}
    for policy in POLICIES:
        parts = [c[policy] for c in per_centre]
        summary[policy] = {
            "utility": float(sum(p["utility"] for p in parts)),
            "taken": float(sum(p["taken"] for p in parts)),
            **{
                key: float(np.average([p[key] for p in parts], weights=weights))
                for key in ("full_first_share", "congestion_at_10", "coverage_at_10", "ndcg_at_10")
            },
        }
    plain, aware = summary["plain"], summary["congestion_aware"]
    summary["change"] = {
        "utility_gain": aware["utility"] / plain["utility"] - 1 if plain["utility"] else float("nan"),
        "full_first_share_ratio": (
            aware["full_first_share"] / plain["full_first_share"] if plain["full_first_share"] else float("nan")
        ),
        "congestion_at_10_drop": 1 - aware["congestion_at_10"] / plain["congestion_at_10"],
        "ndcg_at_10_loss": float(losses.mean()) if losses.size else 0.0,
    }
    return summary


def morning_table(result: dict[str, Any]) -> str:
    """The morning section as a Markdown table (plain vs congestion-aware, with the change and the targets)."""
    plain, aware, change, met = result["plain"], result["congestion_aware"], result["change"], result["met"]
    rows = [
        ("realised total expected utility", plain["utility"], aware["utility"], f"{change['utility_gain']:+.1%}"),
        (
            "first suggestion already full",
            plain["full_first_share"],
            aware["full_first_share"],
            f"x{change['full_first_share_ratio']:.2f}",
        ),
        (
            "congestion@10",
            plain["congestion_at_10"],
            aware["congestion_at_10"],
            f"{-change['congestion_at_10_drop']:+.1%}",
        ),
        ("coverage@10", plain["coverage_at_10"], aware["coverage_at_10"], ""),
        ("NDCG@10 (no capacity)", plain["ndcg_at_10"], aware["ndcg_at_10"], f"{-change['ndcg_at_10_loss']:+.4f}"),
    ]
    lines = ["| morning | plain | congestion-aware | change |", "|---|---|---|---|"]
    lines += [f"| {name} | {a:.4g} | {b:.4g} | {c} |" for name, a, b, c in rows]
    ceiling = result.get("ceiling", {}).get("change")
    if ceiling:
        lines.append(
            "| ceiling: the same rule on true utility | | | "
            f"utility {ceiling['utility_gain']:+.1%}, full x{ceiling['full_first_share_ratio']:.2f}, "
            f"congestion {-ceiling['congestion_at_10_drop']:+.1%}, NDCG {-ceiling['ndcg_at_10_loss']:+.4f} |"
        )
    lines.append("")
    lines.append("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    return "\n".join(lines)
