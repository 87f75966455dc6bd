"""The closed-loop simulation on a small world: served slates, logged propensities, retraining and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from training.config import TrainConfig
from training.loops import summary_table
from training.simulate import SimulationConfig, simulate, simulation_world

FAST = TrainConfig(num_boost_round=60, early_stopping_rounds=20, unshown_negatives=5, bootstrap_samples=100)


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    cfg = SimulationConfig(rounds=1, clients=300, exploration=0.5, train=FAST)
    return simulate(cfg, simulation_world(cfg))


@pytest.mark.slow
def test_round_reports_quality_outcomes_congestion_gap_and_ope(report: dict[str, object]) -> None:
    (entry,) = report["rounds"]  # type: ignore[misc]
    assert entry["explored_slates"] > 0
    for key in ("ndcg_10", "ndcg_10_deterministic", "congestion_10"):
        assert 0.0 <= entry[key] <= 1.0
    for key in ("started_rate", "completed_rate", "employed_6m_rate"):
        assert 0.0 <= entry[key] <= 1.0
    assert entry["started_rate"] >= entry["completed_rate"] >= entry["employed_6m_rate"]
    challenger = entry["challenger"]
    assert set(challenger["estimates"]) == {"ips", "snips", "dr"}
    for est in challenger["estimates"].values():
        assert est["low"] <= est["value"] <= est["high"] or not np.isfinite(est["value"])
        assert 0.0 <= est["support"] <= 1.0
    assert np.isfinite(challenger["true_value"])
    assert isinstance(challenger["promoted"], bool)
    assert "NDCG vs champion" in challenger["gate"] or "gap" in challenger["gate"]
    json.dumps(report, default=float)  # the report is JSON-ready
    assert "learned+exploration(0.5)" in summary_table({"loops": [report]})


def test_cli_writes_the_report(tmp_path: Path) -> None:
    from training.cli import app

    config = tmp_path / "fast.yaml"
    config.write_text("num_boost_round: 30\nearly_stopping_rounds: 10\nunshown_negatives: 5\nbootstrap_samples: 100\n")
    out = tmp_path / "report.json"
    args = ["simulate", "--rounds", "1", "--policy", "points", "--clients", "200", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    loops = json.loads(out.read_text())["loops"]
    assert [loop["loop"] for loop in loops] == ["points"]
    assert "| points | 1 |" in result.output
