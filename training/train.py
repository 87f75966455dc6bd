"""Training run: world -> dataset -> outcome-aware ranker -> evaluation against baselines -> MLflow run + registry."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from training.config import TrainConfig

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from models.outcome import OutcomeAwareRanker
    from models.package import PolkuModel
    from models.rankers import BoosterTrainer, Ranker
    from training.datasets import TrainingData
    from training.evaluate import TestSet
    from training.outcome_training import OutcomeFit
    from training.promote import PromotionDecision
    from training.world import World

logger = logging.getLogger(__name__)

MODEL_RANKER: Final = "lightgbm"
TAGGED_METRICS: Final[tuple[str, ...]] = ("ndcg_5", "ndcg_10", "map_10", "recall_10", "max_group_gap_ndcg_10")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        run_id: MLflow run id.
        model_version: registered version of ``polku-ranker`` (None when not registered).
        model_uri: the logged model's URI.
        report: evaluation report (every ranker).
        table: the report as Markdown.
        metrics: flat metrics as logged (``<ranker>.<metric>``).
        decision: promotion decision, when promotion was requested.
        feedback_stats: counts about the recorded feedback used (empty without ``feedback``).
    """

    run_id: str
    model_version: str | None
    model_uri: str
    report: dict[str, Any]
    table: str
    metrics: dict[str, float]
    decision: PromotionDecision | None = None
    feedback_stats: Mapping[str, int] = field(default_factory=dict)


def _stage(desc: str) -> Any:
    """A one-step progress bar (shown on a terminal only) around a long step."""
    from tqdm.auto import tqdm

    return tqdm(total=1, desc=desc, disable=not sys.stderr.isatty(), leave=False)


def fit_ranker(
    data: TrainingData,
    cfg: TrainConfig,
    sample_weight: npt.NDArray[np.float64] | None = None,
    *,
    booster_trainer: BoosterTrainer | None = None,
) -> OutcomeFit:
    """Fit the outcome-aware ranker (acceptance model, item effects, outcome stages; see ``models.outcome``).

    Args:
        data: from :func:`training.datasets.build_training_data` (its featurizer receives the item effects).
        cfg: run configuration.
        booster_trainer: train the acceptance booster elsewhere (``training.distributed``, ``--dask``).
        sample_weight: acceptance-model weight per row of ``data.train`` (inverse-propensity weights), or None.

    Returns:
        The fitted ranker with the item effects and the training data whose rows carry them.
    """
    from training.outcome_training import fit_outcome_ranker

    return fit_outcome_ranker(data, cfg, sample_weight, booster_trainer=booster_trainer)


def build_models(data: TrainingData, ranker: Ranker | None, cfg: TrainConfig) -> dict[str, PolkuModel]:
    """The candidate and the baselines as packaged models sharing one fitted featurizer.

    Args:
        data: training data (its featurizer is shared).
        ranker: the fitted ranker (None = baselines only).
        cfg: run configuration.

    Returns:
        ranker name -> model (``lightgbm`` when given, ``points``, ``popularity``).
    """
    from models.baselines import PointsRanker, PopularityRanker
    from models.package import PolkuModel

    names = list(data.train.feature_names)
    meta = {"name": cfg.registered_model_name, "trained_on_cohorts": list(data.split.train_cohorts)}
    kw: dict[str, Any] = {} if cfg.first_stage_k is None else {"first_stage_k": cfg.first_stage_k}
    out = {} if ranker is None else {MODEL_RANKER: PolkuModel(data.featurizer, ranker, meta, **kw)}
    out["points"] = PolkuModel(data.featurizer, PointsRanker().bind(names), {"name": "points"}, **kw)
    out["popularity"] = PolkuModel(data.featurizer, PopularityRanker().bind(names), {"name": "popularity"}, **kw)
    return out


def ensure_experiment(name: str) -> str:
    """Select (creating if needed, with the file artifact root under the data directory) an MLflow experiment.

    Args:
        name: experiment name.

    Returns:
        The experiment id.
    """
    import mlflow

    from features.paths import mlflow_artifact_root

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        mlflow.set_experiment(experiment_id=existing.experiment_id)
        return str(existing.experiment_id)
    root = mlflow_artifact_root()
    root.mkdir(parents=True, exist_ok=True)
    exp_id = mlflow.create_experiment(name, artifact_location=root.resolve().as_uri())
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


def _importance_figure(ranker: OutcomeAwareRanker, top: int = 25) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imp = sorted(ranker.feature_importance("gain").items(), key=lambda kv: kv[1])[-top:]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.28 * len(imp))))
    ax.barh([n for n, _ in imp], [v for _, v in imp], color="#3a6ea5")
    ax.set_xlabel("total gain")
    ax.set_title("Acceptance model: LightGBM feature importance (gain)")
    fig.tight_layout()
    return fig


def _world_params(world: World) -> dict[str, Any]:
    manifest: Mapping[str, Any] = getattr(world, "manifest", {}) or {}
    out = {f"world.{k}": v for k, v in manifest.items() if isinstance(v, str | int | float | bool)}
    out["world.n_clients"] = len(world.clients)
    out["world.n_opportunities"] = len(world.opportunities)
    out["world.n_history_rows"] = len(world.history)
    return out


def _log_run(
    *,
    world: World,
    data: TrainingData,
    fit: OutcomeFit,
    model: PolkuModel,
    test: TestSet,
    report: dict[str, Any],
    table: str,
    metrics: dict[str, float],
    cfg: TrainConfig,
) -> tuple[str, str | None]:
    """Log params, metrics, dataset, figure, report and model into the active run; return (model uri, version)."""
    import matplotlib.pyplot as plt
    import mlflow
    import mlflow.data

    from models.example import fake_input_example
    from models.outcome import describe
    from models.packaging import log_polku_model

    ranker = fit.ranker
    mlflow.log_params({**cfg.flat_params(), **_world_params(world)})
    mlflow.log_params({f"fit.{k}": v for k, v in fit.diagnostics.items()})
    mlflow.log_text(describe(ranker), "outcome/parameters.json")
    mlflow.log_params(
        {
            "data.train_rows": len(data.train),
            "data.train_queries": data.train.n_queries,
            "data.valid_rows": 0 if data.valid is None else len(data.valid),
            "data.test_queries": len(test.queries),
            "data.train_cohorts": ",".join(map(str, data.split.train_cohorts)),
            "data.test_cohort": data.split.test_cohort,
            "model.best_iteration": ranker.best_iteration_ or cfg.num_boost_round,
            "model.ranker": ranker.name,
            "model.first_stage_k": model.first_stage_k,
            "model.taxonomy_version": model.metadata["taxonomy_version"],
        }
    )
    mlflow.log_metrics(metrics)
    frame = data.train.frame()
    dataset = mlflow.data.from_pandas(frame, name="polku-train", targets="label")  # type: ignore[attr-defined]
    mlflow.log_input(dataset, context="training")
    _log_feedback(data)
    fig = _importance_figure(ranker)
    mlflow.log_figure(fig, "feature_importance.png")
    plt.close(fig)
    mlflow.log_dict(report, "evaluation/report.json")
    mlflow.log_text(table, "evaluation/report.md")
    example = fake_input_example(list(test.opportunities[:3]))  # a made-up client: no person enters MLflow
    with _stage("log model") as bar:
        info = log_polku_model(
            model, name="model", registered_model_name=cfg.registered_model_name, input_example=example
        )
        bar.update(1)
    version = getattr(info, "registered_model_version", None)
    return str(info.model_uri), None if version is None else str(version)


def _log_feedback(data: TrainingData) -> None:
    """Log the recorded-feedback rows as a second dataset input (context ``feedback``) with their counts."""
    import mlflow
    import mlflow.data

    if not data.feedback_stats:
        return
    mlflow.log_params({f"data.feedback_{key}": value for key, value in data.feedback_stats.items()})
    if data.feedback is not None and len(data.feedback):
        frame = data.feedback.frame()
        dataset = mlflow.data.from_pandas(frame, name="polku-feedback", targets="label")  # type: ignore[attr-defined]
        mlflow.log_input(dataset, context="feedback")


def _tag_version(name: str, version: str, metrics: Mapping[str, float], run_id: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(name, version, "run_id", run_id)
    for key in TAGGED_METRICS:
        full = f"{MODEL_RANKER}.{key}"
        if full in metrics:
            client.set_model_version_tag(name, version, key, f"{metrics[full]:.4f}")


def train(
    world_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    promote: bool = False,
    if_no_champion: bool = False,
    tracking_uri: str | None = None,
    feedback: str | Path | None = None,
    booster_trainer: BoosterTrainer | None = None,
) -> TrainResult:
    """Train, evaluate against every baseline and the oracle, log and register in MLflow, optionally promote.

    Args:
        world_dir: directory written by ``World.save``.
        config: run configuration (default :class:`TrainConfig`).
        promote: apply the promotion gate to the new version.
        if_no_champion: with ``promote``, act only when the registry has no champion yet.
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).
        feedback: a file written by ``polku export-training-data``; its recorded decisions and outcomes are
            appended to the training rows (never to the test cohort) and logged as the ``feedback`` dataset.
        booster_trainer: train the acceptance booster elsewhere (``polku train --dask``).

    Returns:
        The run's ids, report and decision.
    """
    import mlflow

    from features.paths import mlflow_tracking_uri
    from training.datasets import build_training_data
    from training.evaluate import build_test_set, evaluate, flat_metrics, markdown_table
    from training.world import World

    cfg = config or TrainConfig()
    with _stage("load world") as bar:
        world = World.load(Path(world_dir))
        bar.update(1)
    feedback_data = None
    if feedback is not None:
        from training.feedback import read_feedback_export

        feedback_data = read_feedback_export(feedback)
    with _stage("build dataset") as bar:
        data = build_training_data(world, cfg, feedback_data)
        bar.update(1)
    with _stage("fit the outcome-aware model") as bar:
        fit = fit_ranker(data, cfg, booster_trainer=booster_trainer)
        data = fit.data
        bar.update(1)
    models = build_models(data, fit.ranker, cfg)
    test = build_test_set(world, data.split, cfg)
    mlflow.set_tracking_uri(tracking_uri or mlflow_tracking_uri())
    from training.promote import load_champion

    champion = load_champion(cfg, tracking_uri)
    evaluated: dict[str, Any] = dict(models)
    if champion is not None:
        evaluated["champion"] = champion[1]  # same test set: the report gives vs_champion with its interval
    evaluation = evaluate(evaluated, test, cfg)
    report = evaluation.report
    if champion is not None:
        report["champion_version"] = champion[0]
    table = markdown_table(report)
    metrics = flat_metrics(report)
    metrics.update({f"{MODEL_RANKER}.{k}": v for k, v in fit.validation.items()})
    ensure_experiment(cfg.experiment)
    decision = None
    with mlflow.start_run(run_name=f"train-{data.split.test_cohort}") as run:
        run_id = str(run.info.run_id)
        models[MODEL_RANKER].metadata.update({"version": run_id[:12], "run_id": run_id})
        model_uri, version = _log_run(
            world=world,
            data=data,
            fit=fit,
            model=models[MODEL_RANKER],
            test=test,
            report=report,
            table=table,
            metrics=metrics,
            cfg=cfg,
        )
        if version is not None:
            _tag_version(cfg.registered_model_name, version, metrics, run_id)
            if promote:
                from training.promote import promote as run_gate

                decision = run_gate(
                    version,
                    test=test,
                    evaluation=evaluation,
                    candidate=MODEL_RANKER,
                    config=cfg,
                    if_no_champion=if_no_champion,
                    tracking_uri=tracking_uri,
                )
    logger.info("run %s registered %s v%s", run_id, cfg.registered_model_name, version)
    return TrainResult(run_id, version, model_uri, report, table, metrics, decision, dict(data.feedback_stats))


def write_report(result: TrainResult, directory: str | Path) -> Path:
    """Write the report JSON and Markdown next to each other (for the CLI and notebooks).

    Args:
        result: a training result.
        directory: target directory (created).

    Returns:
        The Markdown file.
    """
    import json

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(result.report, indent=1, default=str), encoding="utf-8")
    md = out / "report.md"
    md.write_text(result.table, encoding="utf-8")
    return md


__all__ = ["TrainConfig", "TrainResult", "build_models", "ensure_experiment", "fit_ranker", "train", "write_report"]
