"""TrainConfig: the one validated object that describes a training run (and is what gets logged)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GroupAttribute = Literal["gender", "mother_tongue"]
LabelSource = Literal["graded", "outcome"]

# Small, strongly regularised trees: the history's labels are sparse (about 5 % of shown rows are accepted) and
# noisy, and deeper trees fit that noise (measured on the default world: 31 leaves 0.66, 7 leaves 0.71 NDCG@10).
DEFAULT_TRAIN_LGB_PARAMS: dict[str, Any] = {
    "num_leaves": 7,
    "min_data_in_leaf": 200,
    "lambda_l2": 10.0,
    "feature_fraction": 0.7,
    "learning_rate": 0.05,
    "eval_at": [10],  # early stopping on NDCG@10 only: NDCG@5 of the sparse validation labels peaks by chance
}


class TrainConfig(BaseModel):
    """Everything a training run depends on besides the world itself.

    Attributes:
        seed: seed for LightGBM and any sampling.
        num_boost_round: maximum number of trees.
        early_stopping_rounds: rounds without validation improvement before stopping.
        lgb_params: LightGBM parameters overriding ``models.rankers.DEFAULT_LGB_PARAMS``
            (default :data:`DEFAULT_TRAIN_LGB_PARAMS`).
        valid_fraction: share of training clients held out for early stopping (0 = none).
        test_cohort: cohort year used as the test set (default: the latest one).
        unshown_negatives: per training query, how many eligible items never shown to the client are added
            with label 0 (0 = history only; not used with ``label_source="outcome"``).
        label_source: ``graded`` = employed 4 > completed 3 > started 2 > accepted 1 > shown 0;
            ``outcome`` = the history's noisy ``outcome_score`` of every shown row cut at its training-period
            quintiles into grades 0..4 (shown rows only).
        eval_k: cut-offs for NDCG; the first is also MAP/recall/coverage/congestion/gini cut-off when listed.
        k: the main cut-off (NDCG@k is the gate metric).
        first_stage_k: candidates the first stage passes to the ranker (None = the packaged model's default,
            i.e. exactly what the service does).
        relevant_from: graded relevance from which an item counts as relevant (MAP, recall, exposure).
        group_attributes: audit attributes to slice by.
        min_group_size: least number of test clients a group needs to be reported and gated on its own (smaller
            groups are folded into "other"): a group of 30 clients (~80 queries) has a standard error of NDCG@10
            of ~0.035, so a 0.05 gap there is mostly noise (the random ranker shows ~0.04 gaps on such groups).
        max_group_gap: gate: largest allowed per-group NDCG@k gap.
        max_test_clients: cap on test clients (None = all; for quick runs).
        experiment: MLflow experiment name.
        registered_model_name: MLflow registered model name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 7
    num_boost_round: int = Field(default=400, ge=1)
    early_stopping_rounds: int = Field(default=100, ge=1)
    lgb_params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAIN_LGB_PARAMS))
    valid_fraction: float = Field(default=0.15, ge=0.0, lt=0.9)
    test_cohort: int | None = None
    unshown_negatives: int = Field(default=30, ge=0)
    label_source: LabelSource = "graded"
    eval_k: tuple[int, ...] = (5, 10)
    k: int = Field(default=10, ge=1)
    first_stage_k: int | None = Field(default=None, ge=1)
    relevant_from: int = Field(default=3, ge=1, le=4)
    group_attributes: tuple[GroupAttribute, ...] = ("gender", "mother_tongue")
    min_group_size: int = Field(default=50, ge=1)
    max_group_gap: float = Field(default=0.05, ge=0.0, le=1.0)
    max_test_clients: int | None = Field(default=None, ge=1)
    experiment: str = "polku"
    registered_model_name: str = "polku-ranker"

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.k not in self.eval_k:
            raise ValueError(f"k={self.k} must be one of eval_k={self.eval_k}")
        if self.first_stage_k is not None and self.first_stage_k < self.k:
            raise ValueError(f"first_stage_k={self.first_stage_k} must be >= k={self.k}")
        return self

    def flat_params(self) -> dict[str, Any]:
        """Parameters flattened for ``mlflow.log_params`` (nested LightGBM params as ``lgb.<name>``)."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if key == "lgb_params":
                out.update({f"lgb.{k}": v for k, v in value.items()})
            elif isinstance(value, tuple | list):
                out[key] = ",".join(str(v) for v in value)
            else:
                out[key] = value
        return out
