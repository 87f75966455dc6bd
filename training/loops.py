"""The three loops of the learning-loop comparison on one world, and the report's table (``polku simulate``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.config import TrainConfig
from training.simulate import SimulationConfig, simulate, simulation_world


def compare_loops(
    rounds: int, *, exploration: float, seed: int = 7, clients: int = 3000, train: TrainConfig | None = None
) -> dict[str, Any]:
    """The three loops of the issue on one world: points; learned; learned with exploration."""
    base = SimulationConfig(rounds=rounds, seed=seed, clients=clients, train=train or TrainConfig())
    world = simulation_world(base)
    configs: Sequence[SimulationConfig] = (
        SimulationConfig(**{**base.__dict__, "policy": "points"}),
        base,
        SimulationConfig(**{**base.__dict__, "exploration": exploration}),
    )
    return {"loops": [simulate(c, world) for c in configs]}


def summary_table(report: dict[str, Any]) -> str:
    """A Markdown table of every loop and round (the note quotes it)."""
    head = (
        "| loop | round | NDCG@10 shown | NDCG@10 det. | started | completed | employed 6m | congestion@10 | "
        "group gap | challenger NDCG@10 | OPE SNIPS | OPE DR | true value | NDCG@10 SNIPS | NDCG@10 true | promoted |"
    )
    lines = [head, "|" + "---|" * 16]
    for loop in report["loops"]:
        for r in loop["rounds"]:
            ch = r.get("challenger") or {}
            est = ch.get("estimates", {})

            def fmt(x: Any) -> str:
                return "" if x is None else f"{x:.4f}"

            lines.append(
                f"| {loop['loop']} | {r['round']} | {fmt(r['ndcg_10'])} | {fmt(r['ndcg_10_deterministic'])} | "
                f"{fmt(r['started_rate'])} | {fmt(r['completed_rate'])} | {fmt(r['employed_6m_rate'])} | "
                f"{fmt(r['congestion_10'])} | {fmt(r['max_group_gap_ndcg_10'])} | "
                f"{fmt(ch.get('true_ndcg_10_deterministic'))} | {fmt(est.get('snips', {}).get('value'))} | "
                f"{fmt(est.get('dr', {}).get('value'))} | {fmt(ch.get('true_value'))} | "
                f"{fmt(ch.get('ndcg_estimates', {}).get('snips', {}).get('value'))} | "
                f"{fmt(ch.get('ndcg_true_value'))} | {ch.get('promoted', '')} |"
            )
    return "\n".join(lines)
