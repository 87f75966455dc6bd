"""training.reports: tidy tables of a world and of logged metrics (MLflow readers are covered in test_notebooks)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from training import reports
from training.evaluate import flat_metrics


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    from training.world import generate_world

    return generate_world(n_clients=200, seed=3)


def _ranker(ndcg: float, gap: float = 0.02) -> dict[str, Any]:
    return {
        "ndcg_5": ndcg - 0.05,
        "ndcg_10": ndcg,
        "map_10": ndcg / 2,
        "recall_10": 1.0,
        "coverage_10": 0.9,
        "congestion_10": 0.1,
        "gini_10": 0.4,
        "ndcg_10_by_kind": {"training": ndcg, "vacancy": ndcg + 0.01},
        "groups": {
            "gender": {
                "ndcg_10": {"female": ndcg, "male": ndcg + gap},
                "ndcg_10_gap": gap,
                "exposure_10": {"female": 0.1, "male": 0.2},
            },
        },
        "max_group_gap_ndcg_10": gap,
    }


REPORT: dict[str, Any] = {
    "k": 10,
    "rankers": {"lightgbm": _ranker(0.8), "points": _ranker(0.7), "oracle": _ranker(1.0, 0.0), "random": _ranker(0.5)},
}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("lightgbm.ndcg_10", ("lightgbm", "ndcg_10", "", "")),
        ("lightgbm.gender.female.ndcg_10", ("lightgbm", "ndcg_10", "gender", "female")),
        ("points.mother_tongue.ar.exposure_10", ("points", "exposure_10", "mother_tongue", "ar")),
        ("lightgbm.gender.ndcg_10_gap", ("lightgbm", "ndcg_10_gap", "gender", "")),
        ("oracle.ndcg_10_by_kind.work_trial", ("oracle", "ndcg_10", "kind", "work_trial")),
        ("v3.first_stage_recall_10", ("v3", "first_stage_recall_10", "", "")),
    ],
)
def test_split_metric_key(key: str, expected: tuple[str, str, str, str]) -> None:
    assert reports.split_metric_key(key) == expected


def test_metrics_long_round_trips_flat_metrics() -> None:
    flat = flat_metrics(REPORT)
    long = reports.metrics_long(flat, "run-1")
    assert list(long.columns) == list(reports.METRIC_COLUMNS)
    assert len(long) == len(flat)
    assert set(long["run_id"]) == {"run-1"}
    assert set(long["slice"]) == {"", "gender", "kind"}
    row = long[(long["ranker"] == "lightgbm") & (long["slice"] == "gender") & (long["group"] == "male")]
    assert row.set_index("metric").loc["ndcg_10", "value"] == pytest.approx(0.82)


def test_ranker_comparison_orders_and_ratios() -> None:
    table = reports.ranker_comparison(reports.metrics_long(flat_metrics(REPORT), "r"))
    assert list(table.index) == ["lightgbm", "points", "oracle", "random"]
    assert list(table.columns[:2]) == ["ndcg_5", "ndcg_10"]
    assert table.loc["lightgbm", "ndcg_10/oracle"] == pytest.approx(0.8)
    assert table.loc["lightgbm", "ndcg_10/points"] == pytest.approx(0.8 / 0.7)
    assert "ndcg_10_gap" not in table.columns  # per-group values stay out of the overall table


def test_ranker_comparison_needs_run_id_with_several_runs() -> None:
    long = pd.concat([reports.metrics_long(flat_metrics(REPORT), r) for r in ("a", "b")], ignore_index=True)
    with pytest.raises(ValueError, match="run_id"):
        reports.ranker_comparison(long)
    assert len(reports.ranker_comparison(long, "b")) == 4


def test_group_table_and_gap() -> None:
    long = reports.metrics_long(flat_metrics(REPORT), "r")
    ndcg = reports.group_table(long, attribute="gender", metric="ndcg_10")
    assert list(ndcg.columns) == ["female", "male", "gap"]
    assert ndcg.loc["points", "gap"] == pytest.approx(0.02)
    assert ndcg.loc["oracle", "gap"] == pytest.approx(0.0)
    exposure = reports.group_table(long, attribute="gender", metric="exposure_10")
    assert exposure.loc["lightgbm", "male"] == pytest.approx(0.2)
    kinds = reports.group_table(long, attribute="kind", metric="ndcg_10")
    assert set(kinds.columns) == {"training", "vacancy", "gap"}
    assert reports.group_table(long, attribute="mother_tongue").empty


def test_metric_over_runs_sorted_by_time() -> None:
    long = pd.concat(
        [reports.metrics_long({"lightgbm.ndcg_10": v, "points.ndcg_10": 0.7}, r) for r, v in (("a", 0.8), ("b", 0.9))],
        ignore_index=True,
    )
    runs = pd.DataFrame(
        {"run_id": ["b", "a"], "start_time": pd.to_datetime(["2025-02-01", "2025-01-01"], utc=True)},
    )
    table = reports.metric_over_runs(long, runs)
    assert table["run_id"].tolist() == ["a", "b"]
    assert table["lightgbm"].tolist() == pytest.approx([0.8, 0.9])


def test_focus_version_prefers_champion_then_challenger() -> None:
    frame = pd.DataFrame({"version": [3, 2, 1], "role": ["challenger", "champion", ""]})
    assert reports.focus_version(frame) == 2
    assert reports.focus_version(frame.assign(role=["challenger", "", ""])) == 3
    assert reports.focus_version(frame.assign(role="")) == 3
    assert reports.focus_version(frame.iloc[0:0]) is None


def test_calibration_frame(world) -> None:  # type: ignore[no-untyped-def]
    from training.world import calibration_report

    report = calibration_report(world)
    frame = reports.calibration_frame(report)
    assert len(frame) == len(report["checks"])
    assert frame.set_index("check").loc["gender/male", "target"] == pytest.approx(0.75)
    ok_by_distance = frame["distance"].abs() <= 1 + 1e-9
    assert (frame["ok"] == ok_by_distance).all()
    extras = reports.calibration_frame(report, include_extras=True)
    assert len(extras) == len(report["checks"]) + len(report["extras"])
    assert reports.calibration_frame({}).empty


def test_clients_frame(world) -> None:  # type: ignore[no-untyped-def]
    frame = reports.clients_frame(world)
    assert len(frame) == len(world.clients)
    assert frame["client_id"].is_unique
    assert frame["finnish_level"].cat.ordered
    assert (frame["finnish_level"].cat.codes == frame["finnish_ordinal"]).all()
    assert set(frame["literacy"]) <= {"none", "basic", "functional"}
    assert frame["cohort"].notna().all()
    assert set(frame["gender"]) <= {"female", "male", "other", "unknown"}


def test_catalogue_frame(world) -> None:  # type: ignore[no-untyped-def]
    frame = reports.catalogue_frame(world)
    assert len(frame) == len(world.opportunities)
    assert (frame.loc[frame["kind"] != "training", "route"] == "-").all()
    assert (frame.loc[frame["kind"] == "training", "route"] != "-").all()


def test_history_rates(world) -> None:  # type: ignore[no-untyped-def]
    by_kind = reports.history_rates(world)
    assert by_kind["shown"].sum() == len(world.history)
    assert by_kind[["accepted", "started", "completed", "employed_6m"]].stack().between(0, 1).all()
    assert (by_kind["started"] <= by_kind["accepted"] + 1e-12).all()
    by_centre = reports.history_rates(world, "centre")
    assert by_centre["shown"].sum() == len(world.history)
    both = reports.history_rates(world, ["cohort", "kind"])
    assert {"cohort", "kind"} <= set(both.columns)
