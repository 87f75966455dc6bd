"""Promotion gate: the ``champion`` alias moves to a new version only if it is at least as good and fair enough.

The gate re-evaluates the current champion on the *same* test set as the candidate, then requires
``NDCG@k(candidate) >= NDCG@k(champion)`` and a largest per-group NDCG@k gap ``<= max_group_gap``. Without a
champion the reference is the points baseline that the service falls back to. A refused candidate gets the
``challenger`` alias. The decision and its reason are set as tags on the model version (and the run, if one is
active). ``rollback`` moves ``champion`` back to any earlier version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

from training.config import TrainConfig

if TYPE_CHECKING:
    from training.evaluate import TestSet

logger = logging.getLogger(__name__)

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of the gate for one model version.

    Attributes:
        version: the candidate version.
        promoted: True when ``champion`` now points at it.
        alias: the alias it received (``champion``, ``challenger``) or ``None`` when left alone.
        reason: one sentence saying why.
        candidate_ndcg: candidate NDCG@k on the test set.
        reference: what it was compared with (``champion vN`` or ``points baseline``).
        reference_ndcg: the reference's NDCG@k on the same test set (None when not compared).
        max_group_gap: candidate's largest per-group NDCG@k gap.
    """

    version: str
    promoted: bool
    alias: str | None
    reason: str
    candidate_ndcg: float
    reference: str
    reference_ndcg: float | None
    max_group_gap: float

    def tags(self) -> dict[str, str]:
        """The decision as ``gate.*`` string tags."""
        return {f"gate.{k}": "" if v is None else str(v) for k, v in asdict(self).items()}


def decide(
    candidate_ndcg: float,
    candidate_gap: float,
    reference_ndcg: float | None,
    *,
    max_group_gap: float,
    reference: str = "champion",
    reference_gap: float | None = None,
) -> tuple[bool, str]:
    """The pure gate rule.

    Args:
        candidate_ndcg: candidate NDCG@k.
        candidate_gap: candidate's largest per-group NDCG@k gap.
        reference_ndcg: the champion's (or baseline's) NDCG@k on the same test set; None = nothing to beat.
        max_group_gap: largest allowed gap.
        reference: name of the reference, for the reason text.
        reference_gap: only for a first champion, the group gap of the points fallback that serves while there
            is no champion. A first champion may exceed ``max_group_gap`` only if it narrows that gap, since
            refusing it would leave the wider gap in service; every later promotion uses ``max_group_gap`` alone.

    Returns:
        (promote?, reason).
    """
    if candidate_gap > max_group_gap:
        if reference_gap is None or candidate_gap > reference_gap:
            return False, f"largest per-group NDCG gap {candidate_gap:.4f} exceeds {max_group_gap:.4f}"
        if reference_ndcg is not None and candidate_ndcg < reference_ndcg:
            return False, f"NDCG {candidate_ndcg:.4f} is below {reference} NDCG {reference_ndcg:.4f}"
        return True, (
            f"first champion: NDCG {candidate_ndcg:.4f} >= {reference} NDCG {reference_ndcg or 0.0:.4f}; group gap "
            f"{candidate_gap:.4f} exceeds {max_group_gap:.4f} but narrows the {reference}'s {reference_gap:.4f} "
            "that would serve otherwise"
        )
    if reference_ndcg is not None and candidate_ndcg < reference_ndcg:
        return False, f"NDCG {candidate_ndcg:.4f} is below {reference} NDCG {reference_ndcg:.4f}"
    if reference_ndcg is None:
        return True, f"no {reference} to compare with; group gap {candidate_gap:.4f} <= {max_group_gap:.4f}"
    return True, (
        f"NDCG {candidate_ndcg:.4f} >= {reference} NDCG {reference_ndcg:.4f} and group gap "
        f"{candidate_gap:.4f} <= {max_group_gap:.4f}"
    )


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


def _evaluate_version(name: str, version: str, test: TestSet, cfg: TrainConfig) -> dict[str, Any]:
    from models.package import load_polku_model
    from training.evaluate import evaluate_models

    model = load_polku_model(f"models:/{name}/{version}")
    if cfg.first_stage_k is not None:
        model.first_stage_k = cfg.first_stage_k
    report = evaluate_models({f"v{version}": model}, test, cfg, include_bounds=False)
    return dict(report["rankers"][f"v{version}"])


def promote(
    version: str | int,
    *,
    test: TestSet,
    candidate_metrics: Mapping[str, Any] | None = None,
    baseline_ndcg: float | None = None,
    baseline_gap: float | None = None,
    config: TrainConfig | None = None,
    if_no_champion: bool = False,
    tracking_uri: str | None = None,
) -> PromotionDecision:
    """Apply the gate to a registered version and move the aliases.

    Args:
        version: candidate version of ``config.registered_model_name``.
        test: the test set both the candidate and the champion are evaluated on.
        candidate_metrics: the candidate's metrics on ``test`` (re-evaluated from the registry when absent).
        baseline_ndcg: the points baseline's NDCG@k on ``test``: the reference when there is no champion.
        baseline_gap: the points baseline's largest per-group NDCG@k gap on ``test`` (first champion only).
        config: run configuration (``k``, ``max_group_gap``, ``registered_model_name``).
        if_no_champion: only act when there is no champion yet (leave an existing champion alone).
        tracking_uri: MLflow tracking URI (default ``features.paths.mlflow_tracking_uri()``).

    Returns:
        The decision (also set as tags on the version).
    """
    cfg = config or TrainConfig()
    client = _client(tracking_uri)
    name, ver, k = cfg.registered_model_name, str(version), cfg.k
    cand = dict(candidate_metrics) if candidate_metrics is not None else _evaluate_version(name, ver, test, cfg)
    cand_ndcg = float(cand[f"ndcg_{k}"])
    cand_gap = float(cand.get(f"max_group_gap_ndcg_{k}", 0.0))
    current = champion_version(name, client=client)
    if current == ver:
        decision = PromotionDecision(ver, True, CHAMPION, "already champion", cand_ndcg, "itself", cand_ndcg, cand_gap)
    elif if_no_champion and current is not None:
        reason = f"champion v{current} exists and --if-no-champion was given: aliases left alone"
        decision = PromotionDecision(ver, False, None, reason, cand_ndcg, f"champion v{current}", None, cand_gap)
    else:
        ref_ndcg: float | None = baseline_ndcg
        ref_gap: float | None = baseline_gap
        reference = "points baseline"
        if current is not None:
            reference = f"champion v{current}"
            ref_ndcg = float(_evaluate_version(name, current, test, cfg)[f"ndcg_{k}"])
            ref_gap = None
        ok, reason = decide(
            cand_ndcg, cand_gap, ref_ndcg, max_group_gap=cfg.max_group_gap, reference=reference, reference_gap=ref_gap
        )
        alias = CHAMPION if ok else CHALLENGER
        client.set_registered_model_alias(name, alias, ver)
        if ok and ver in _alias_versions(client, name, CHALLENGER):
            client.delete_registered_model_alias(name, CHALLENGER)
        decision = PromotionDecision(ver, ok, alias, reason, cand_ndcg, reference, ref_ndcg, cand_gap)
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
