"""Promotion gate: the ``champion`` alias moves to a new version only if it is not clearly worse and fair enough.

The gate evaluates the current champion on the *same* test set as the candidate and computes the paired
difference of NDCG@k (candidate - champion) with a 95 % interval by resampling test clients
(:func:`training.evaluate.paired_difference`). It promotes only if the interval's lower end is at least
``min_gain_lower_bound`` (default -0.005: a candidate may be worse by chance, never clearly worse) and the
candidate's largest per-group NDCG@k gap is at most ``max_group_gap``, or, when the gap of what serves now (the
reference) is itself above that limit, no wider than the reference's by more than ``gap_tolerance``: refusing
such a candidate would keep the wider gap in service. Without a champion the reference is the points baseline
the service falls back to, under the same rules. A refused candidate gets the
``challenger`` alias. The decision, with its interval, is set as tags on the model version (and the run, if one
is active). ``rollback`` moves ``champion`` back to any earlier version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from training.config import TrainConfig

if TYPE_CHECKING:
    from features.records import Opportunity
    from training.evaluate import Evaluation, TestSet

logger = logging.getLogger(__name__)

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
CANDIDATE: Final = "candidate"


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the gate for one model version.

    Attributes:
        version: the candidate version.
        promoted: True when ``champion`` now points at it.
        alias: the alias it received (``champion``, ``challenger``) or ``None`` when left alone.
        reason: one sentence saying why (with the interval).
        candidate_ndcg: candidate NDCG@k on the test set.
        reference: what it was compared with (``champion vN`` or ``points baseline``).
        reference_ndcg: the reference's NDCG@k on the same test set (None when not compared).
        max_group_gap: candidate's largest per-group NDCG@k gap.
        gain: NDCG@k(candidate) - NDCG@k(reference), mean over test queries (None when not compared).
        gain_low: lower end of its 95 % paired bootstrap interval.
        gain_high: upper end.
    """

    version: str
    promoted: bool
    alias: str | None
    reason: str
    candidate_ndcg: float
    reference: str
    reference_ndcg: float | None
    max_group_gap: float
    gain: float | None = None
    gain_low: float | None = None
    gain_high: float | None = None

    def tags(self) -> dict[str, str]:
        """The decision as ``gate.*`` string tags."""
        return {f"gate.{k}": "" if v is None else str(v) for k, v in asdict(self).items()}


GAP_TOLERANCE: Final = 0.005
"""How much wider than the reference's gap a candidate's may be when the reference's is above the limit."""


def decide(
    gain: Mapping[str, float] | None,
    candidate_gap: float,
    *,
    max_group_gap: float,
    min_gain_lower_bound: float,
    reference: str = "champion",
    reference_gap: float | None = None,
    gap_tolerance: float = GAP_TOLERANCE,
) -> tuple[bool, str]:
    """The pure gate rule.

    Args:
        gain: ``{"diff", "lo", "hi"}``: NDCG@k(candidate - reference) and its 95 % interval (None = nothing to
            compare with).
        candidate_gap: candidate's largest per-group NDCG@k gap.
        max_group_gap: largest allowed gap.
        min_gain_lower_bound: least allowed lower end of the interval.
        reference: name of the reference, for the reason text.
        reference_gap: the reference's largest gap on the same test set (what serves if the candidate is refused).
        gap_tolerance: see the module docstring.

    Returns:
        (promote?, reason).
    """
    interval = (
        ""
        if gain is None
        else f"NDCG vs {reference} {gain['diff']:+.4f}, 95 % interval [{gain['lo']:+.4f}, {gain['hi']:+.4f}]"
    )
    gap_text = f"group gap {candidate_gap:.4f} <= {max_group_gap:.4f}"
    if candidate_gap > max_group_gap:
        tail = f" ({interval})" if interval else ""
        above = f"largest per-group NDCG gap {candidate_gap:.4f} exceeds {max_group_gap:.4f}"
        if reference_gap is None or reference_gap <= max_group_gap:
            return False, above + tail
        if candidate_gap > reference_gap + gap_tolerance:
            return False, f"{above} and widens the {reference}'s {reference_gap:.4f} by more than {gap_tolerance}{tail}"
        gap_text = f"{above}, but the {reference} that serves otherwise has {reference_gap:.4f}"
    if gain is None:
        return True, f"no {reference} to compare with; {gap_text}"
    if gain["lo"] < min_gain_lower_bound:
        return False, f"{interval}: the lower end is below {min_gain_lower_bound:+.4f}"
    return True, f"{interval}: the lower end is at least {min_gain_lower_bound:+.4f}; {gap_text}"


def _client(tracking_uri: str | None) -> Any:
    import mlflow
    from mlflow import MlflowClient

    from features.paths import mlflow_tracking_uri

    uri = tracking_uri or mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _alias_versions(client: Any, name: str, alias: str) -> set[str]:
    from mlflow.exceptions import MlflowException

    try:
        return {str(client.get_model_version_by_alias(name, alias).version)}
    except MlflowException:
        return set()


def champion_version(name: str, *, client: Any) -> str | None:
    """The version the ``champion`` alias points at, or None.

    Args:
        name: registered model name.
        client: an ``MlflowClient``.
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def load_champion(cfg: TrainConfig, tracking_uri: str | None = None) -> tuple[str, Any] | None:
    """The current champion's version and model (None without one, or when it cannot be loaded).

    Args:
        cfg: for ``registered_model_name`` and ``first_stage_k``.
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).
    """
    from models.package import ModelLoadError
    from models.packaging import load_polku_model

    client = _client(tracking_uri)
    name = cfg.registered_model_name
    version = champion_version(name, client=client)
    if version is None:
        return None
    try:
        model = load_polku_model(f"models:/{name}/{version}")
    except ModelLoadError as exc:  # e.g. trained by an older Polku: the gate re-evaluates it or compares with points
        logger.warning("champion v%s cannot be loaded for comparison: %s", version, exc)
        return None
    if cfg.first_stage_k is not None:
        model.first_stage_k = cfg.first_stage_k
    return version, model


def _evaluate_version(
    name: str, version: str, test: TestSet, cfg: TrainConfig, *, label: str, with_points: bool = False
) -> Evaluation:
    from models.packaging import load_polku_model
    from training.evaluate import evaluate

    model = load_polku_model(f"models:/{name}/{version}")
    if cfg.first_stage_k is not None:
        model.first_stage_k = cfg.first_stage_k
    models: dict[str, Any] = {label: model}
    if with_points:
        models["points"] = model.points_baseline(name="points")
    return evaluate(models, test, cfg, include_bounds=False)


def promote(
    version: str | int,
    *,
    test: TestSet,
    evaluation: Evaluation | None = None,
    candidate: str = "lightgbm",
    config: TrainConfig | None = None,
    if_no_champion: bool = False,
    tracking_uri: str | None = None,
) -> PromotionDecision:
    """Apply the gate to a registered version and move the aliases.

    Args:
        version: candidate version of ``config.registered_model_name``.
        test: the test set both the candidate and the champion are evaluated on.
        evaluation: the training run's evaluation on ``test`` holding ``candidate`` and ``points``, and
            ``champion`` when its report names the current champion's version (``champion_version``); what is
            missing is evaluated from the registry.
        candidate: the candidate's name in ``evaluation``.
        config: run configuration (``k``, ``max_group_gap``, ``min_gain_lower_bound``, ``registered_model_name``).
        if_no_champion: only act when there is no champion yet (leave an existing champion alone).
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).

    Returns:
        The decision (also set as tags on the version).
    """
    from training.evaluate import paired_difference

    cfg = config or TrainConfig()
    client = _client(tracking_uri)
    name, ver, k = cfg.registered_model_name, str(version), cfg.k
    if evaluation is None or candidate not in evaluation.per_query:
        evaluation = _evaluate_version(name, ver, test, cfg, label=CANDIDATE, with_points=True)
        candidate = CANDIDATE
    cand = evaluation.report["rankers"][candidate]
    cand_ndcg = float(cand[f"ndcg_{k}"])
    cand_gap = float(cand.get(f"max_group_gap_ndcg_{k}", 0.0))
    current = champion_version(name, client=client)
    if current == ver:
        decision = PromotionDecision(ver, True, CHAMPION, "already champion", cand_ndcg, "itself", cand_ndcg, cand_gap)
    elif if_no_champion and current is not None:
        reason = f"champion v{current} exists and --if-no-champion was given: aliases left alone"
        decision = PromotionDecision(ver, False, None, reason, cand_ndcg, f"champion v{current}", None, cand_gap)
    else:
        gain: dict[str, Any] | None = None
        ref_ndcg: float | None = None
        ref_gap: float | None = None
        reference = "points baseline"
        if current is not None:
            reference = f"champion v{current}"
            if CHAMPION in evaluation.per_query and evaluation.report.get("champion_version") == current:
                champ = evaluation
            else:
                champ = _evaluate_version(name, current, test, cfg, label=CHAMPION)
            ref_ndcg = float(champ.report["rankers"][CHAMPION][f"ndcg_{k}"])
            ref_gap = float(champ.report["rankers"][CHAMPION].get(f"max_group_gap_ndcg_{k}", 0.0))
            gain = paired_difference(
                evaluation.per_query[candidate],
                champ.per_query[CHAMPION],
                evaluation.query_clients,
                evaluation.query_kinds,
                samples=cfg.bootstrap_samples,
                seed=cfg.seed,
            )["all"]
        elif "points" in evaluation.per_query:
            ref_ndcg = float(evaluation.report["rankers"]["points"][f"ndcg_{k}"])
            ref_gap = float(evaluation.report["rankers"]["points"].get(f"max_group_gap_ndcg_{k}", 0.0))
            gain = evaluation.compare(candidate, "points", samples=cfg.bootstrap_samples, seed=cfg.seed)["all"]
        ok, reason = decide(
            gain,
            cand_gap,
            max_group_gap=cfg.max_group_gap,
            min_gain_lower_bound=cfg.min_gain_lower_bound,
            reference=reference,
            reference_gap=ref_gap,
        )
        alias = CHAMPION if ok else CHALLENGER
        client.set_registered_model_alias(name, alias, ver)
        if ok and ver in _alias_versions(client, name, CHALLENGER):
            client.delete_registered_model_alias(name, CHALLENGER)
        decision = PromotionDecision(
            ver,
            ok,
            alias,
            reason,
            cand_ndcg,
            reference,
            ref_ndcg,
            cand_gap,
            None if gain is None else float(gain["diff"]),
            None if gain is None else float(gain["lo"]),
            None if gain is None else float(gain["hi"]),
        )
    _record(decision, name=name, client=client)
    return decision


def _record(decision: PromotionDecision, *, name: str, client: Any) -> None:
    import mlflow

    for key, value in decision.tags().items():
        client.set_model_version_tag(name, decision.version, key, value)
    if mlflow.active_run() is not None:
        mlflow.set_tags(decision.tags())
    logger.info("promotion of %s v%s: %s (%s)", name, decision.version, decision.alias, decision.reason)


def rollback(version: str | int, *, config: TrainConfig | None = None, tracking_uri: str | None = None) -> str | None:
    """Point ``champion`` at an earlier version (no gate: an operator's decision).

    Args:
        version: the version to serve again.
        config: for ``registered_model_name``.
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).

    Returns:
        The version that was champion before, if any.
    """
    cfg = config or TrainConfig()
    client = _client(tracking_uri)
    name, ver = cfg.registered_model_name, str(version)
    client.get_model_version(name, ver)  # raises when the version does not exist
    previous = champion_version(name, client=client)
    client.set_registered_model_alias(name, CHAMPION, ver)
    client.set_model_version_tag(name, ver, "gate.rollback_from", previous or "")
    logger.info("rollback: %s@champion %s -> %s", name, previous, ver)
    return previous


def promote_offline(
    version: str | int,
    *,
    logs: str | Path,
    opportunities: Sequence[Opportunity],
    config: TrainConfig | None = None,
    tracking_uri: str | None = None,
) -> PromotionDecision:
    """The gate on logged data alone (``training.offline_gate``): estimate, decide, move the aliases, tag.

    Args:
        version: candidate version of ``config.registered_model_name``.
        logs: an export of ``polku export-training-data`` (format 2, with impressions).
        opportunities: the catalogue the logged slates were served from.
        config: run configuration (``min_gain_lower_bound``, ``registered_model_name``, ``seed``).
        tracking_uri: MLflow tracking URI.

    Returns:
        The decision (``candidate_ndcg`` holds the SNIPS estimate, ``reference_ndcg`` the logged policy's value).
    """
    from models.packaging import load_polku_model
    from training.feedback import read_feedback_export
    from training.offline_gate import offline_decision, offline_policy_evaluation

    cfg = config or TrainConfig()
    client = _client(tracking_uri)
    name, ver = cfg.registered_model_name, str(version)
    candidate = load_polku_model(f"models:/{name}/{ver}")
    evaluation = offline_policy_evaluation(read_feedback_export(logs), opportunities, candidate)
    ok, gain, reason = offline_decision(evaluation, min_gain_lower_bound=cfg.min_gain_lower_bound)
    alias = CHAMPION if ok else CHALLENGER
    client.set_registered_model_alias(name, alias, ver)
    if ok and ver in _alias_versions(client, name, CHALLENGER):
        client.delete_registered_model_alias(name, CHALLENGER)
    snips = evaluation.estimates["snips"]
    decision = PromotionDecision(
        ver,
        ok,
        alias,
        "offline policy evaluation: " + reason,
        snips.value,
        "logged policy (offline)",
        evaluation.logged_value,
        float("nan"),
        gain["diff"],
        gain["lo"],
        gain["hi"],
    )
    _record(decision, name=name, client=client)
    return decision
