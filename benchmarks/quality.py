"""Section 5: quality table of the latest train run (MLflow), or of a fresh in-process evaluation."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from benchmarks.data import Fixtures
from benchmarks.report import Section

logger = logging.getLogger(__name__)

ORACLE = "oracle"
POINTS = "points"
CANDIDATE = "lightgbm"


def _latest_run_metrics(tracking_uri: str, experiment: str) -> tuple[dict[str, dict[str, float]], str] | None:
    """``ranker -> metrics`` of the newest finished run of ``experiment`` (None when there is none)."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in runs:
        per: dict[str, dict[str, float]] = {}
        for key, value in run.data.metrics.items():
            m = re.fullmatch(
                r"([a-z0-9_-]+)\.((?:[a-z_]+_\d+)(?:_by_kind\.[a-z_]+)?|vs_points\.[a-z_]+\.(?:diff|lo|hi))", key
            )
            if m:
                per.setdefault(m.group(1), {})[m.group(2)] = float(value)
        if any("ndcg_10" in v for v in per.values()):
            return per, f"MLflow run {run.info.run_id} ({run.info.run_name}) at {tracking_uri}"
    return None


def _fresh_evaluation(fx: Fixtures) -> tuple[dict[str, dict[str, float]], str]:
    """Train and evaluate in process (no MLflow) on the benchmark world, through the served two stages."""
    from training.config import TrainConfig
    from training.datasets import build_training_data
    from training.evaluate import build_test_set, evaluate_models
    from training.train import build_models, fit_ranker

    cfg = TrainConfig()
    world = fx.world
    data = build_training_data(world, cfg)
    fit = fit_ranker(data, cfg)
    models = build_models(fit.data, fit.ranker, cfg)
    test = build_test_set(world, fit.data.split, cfg)
    report = evaluate_models(models, test, cfg)
    per: dict[str, dict[str, float]] = {}
    for name, vals in report["rankers"].items():
        row = {k: float(v) for k, v in vals.items() if isinstance(v, int | float)}
        row.update({f"ndcg_10_by_kind.{kind}": float(v) for kind, v in vals.get("ndcg_10_by_kind", {}).items()})
        for part, block in (vals.get("vs_points") or {}).items():
            row.update({f"vs_points.{part}.{leaf}": float(block[leaf]) for leaf in ("diff", "lo", "hi")})
        per[name] = row
    return per, f"in-process evaluation on the benchmark world ({len(world.clients)} clients; no train run found)"


def run(section: Section, fx: Fixtures) -> None:
    """Every ranker's NDCG@10 (overall and per kind) with its ratio to the oracle and to the points baseline.

    The checks are issue 10's targets on the default world: NDCG@10 >= 0.78 overall, >= 0.72 on trainings, work
    trials and vacancies no lower than before the outcome-aware model (0.83 and 0.79), and the lower end of the
    95 % interval of (LightGBM - points) >= +0.05.
    """
    from features.paths import mlflow_tracking_uri

    found: Any = None
    if not fx.sizes.world_clients < 1000:  # the smoke run never reads the developer's MLflow store
        try:
            found = _latest_run_metrics(mlflow_tracking_uri(), "polku")
        except Exception as exc:  # noqa: BLE001 - fall back to a fresh evaluation
            section.note(f"reading MLflow failed: {type(exc).__name__}: {exc}")
    per, source = found if found is not None else _fresh_evaluation(fx)
    section.note(f"source: {source}")
    oracle = per.get(ORACLE, {}).get("ndcg_10")
    points = per.get(POINTS, {}).get("ndcg_10")
    order = sorted(per, key=lambda r: -(per[r].get("ndcg_10") or 0.0))
    for name in order:
        m = per[name]
        ndcg = m.get("ndcg_10")
        section.add_row(
            ranker=name,
            ndcg_10=ndcg,
            training=m.get("ndcg_10_by_kind.training"),
            work_trial=m.get("ndcg_10_by_kind.work_trial"),
            vacancy=m.get("ndcg_10_by_kind.vacancy"),
            vs_points_lo=m.get("vs_points.all.lo"),
            ndcg_5=m.get("ndcg_5"),
            map_10=m.get("map_10"),
            recall_10=m.get("recall_10"),
            coverage_10=m.get("coverage_10"),
            first_stage_recall_10=m.get("first_stage_recall_10"),
            to_oracle=ndcg / oracle if ndcg is not None and oracle else None,
            to_points=ndcg / points if ndcg is not None and points else None,
        )
    cand_row = per.get(CANDIDATE, {})
    cand = cand_row.get("ndcg_10")
    section.check("lightgbm NDCG@10 / points", cand / points if cand is not None and points else None, ">=", 1.0, "x")
    section.check("lightgbm NDCG@10", cand, ">=", 0.78, "")
    section.check("lightgbm NDCG@10 on trainings", cand_row.get("ndcg_10_by_kind.training"), ">=", 0.72, "")
    section.check("lightgbm NDCG@10 on work trials", cand_row.get("ndcg_10_by_kind.work_trial"), ">=", 0.83, "")
    section.check("lightgbm NDCG@10 on vacancies", cand_row.get("ndcg_10_by_kind.vacancy"), ">=", 0.79, "")
    section.check("lower end of 95 % interval of (lightgbm - points)", cand_row.get("vs_points.all.lo"), ">=", 0.05, "")
    fs = per.get(CANDIDATE, {}).get("first_stage_recall_10")
    if fs is not None:
        section.check("first-stage recall of the full top 10", fs, ">=", 0.9, "", note="informative target")
