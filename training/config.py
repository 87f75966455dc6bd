"""TrainConfig: the one validated object that describes a training run (and is what gets logged)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GroupAttribute = Literal["gender", "mother_tongue"]
VALUE_STAGES: tuple[str, ...] = ("start", "complete", "employ", "accept")

# Small, strongly regularised trees: the history's labels are sparse (about 5 % of shown rows are accepted) and
# noisy, and deeper trees fit that noise (measured on the default world: 31 leaves 0.66, 7 leaves 0.71 NDCG@10).
DEFAULT_TRAIN_LGB_PARAMS: dict[str, Any] = {
    "num_leaves": 7,
    "min_data_in_leaf": 200,
    "lambda_l2": 10.0,
    "feature_fraction": 0.7,
    "learning_rate": 0.05,
    "eval_at": [10],  # early stopping on NDCG@10 of the validation clients' shown rows
}
DEFAULT_VALUE_WEIGHTS: dict[str, float] = {"start": 1.0, "complete": 1.0, "employ": 1.0, "accept": 0.0}
"""Weights of the ranking score (``models.outcome``): E[value | accepted] counts each outcome stage reached and
employment above its route's base rate; ``accept`` adds the acceptance probability itself (0 by default: a
preference that does not pay off should not lift an item, and the counsellor sees ``p_accept`` anyway)."""


class TrainConfig(BaseModel):
    """Everything a training run depends on besides the world itself.

    Attributes:
        seed: seed for LightGBM and any sampling.
        num_boost_round: maximum number of trees of the acceptance model.
        early_stopping_rounds: rounds without validation improvement before stopping (validation NDCG@k of
            acceptance among the rows that were shown to the held-out clients).
        lgb_params: LightGBM parameters overriding ``models.rankers.DEFAULT_LGB_PARAMS``
            (default :data:`DEFAULT_TRAIN_LGB_PARAMS`).
        valid_fraction: share of training clients held out for early stopping (0 = none).
        test_cohort: cohort year used as the test set (default: the latest one).
        unshown_negatives: per training query, how many eligible items never shown to the client are added
            with label 0 (0 = history only).
        value_weights: weights of the combined ranking score (:data:`DEFAULT_VALUE_WEIGHTS`): ``start``,
            ``complete``, ``employ`` (the value of each outcome stage reached) and ``accept``.
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
        min_gain_lower_bound: gate: the lower end of the 95 % interval of NDCG@k(candidate - champion) must be at
            least this (a candidate may be slightly worse by chance, never clearly worse).
        bootstrap_samples: replicates of the paired client bootstrap behind every interval.
        max_test_clients: cap on test clients (None = all; for quick runs).
        experiment: MLflow experiment name.
        registered_model_name: MLflow registered model name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 7
    num_boost_round: int = Field(default=800, ge=1)
    early_stopping_rounds: int = Field(default=150, ge=1)
    lgb_params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_TRAIN_LGB_PARAMS))
    valid_fraction: float = Field(default=0.15, ge=0.0, lt=0.9)
    test_cohort: int | None = None
    unshown_negatives: int = Field(default=30, ge=0)
    value_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_VALUE_WEIGHTS))
    eval_k: tuple[int, ...] = (5, 10)
    k: int = Field(default=10, ge=1)
    first_stage_k: int | None = Field(default=None, ge=1)
    relevant_from: int = Field(default=3, ge=1, le=4)
    group_attributes: tuple[GroupAttribute, ...] = ("gender", "mother_tongue")
    min_group_size: int = Field(default=50, ge=1)
    max_group_gap: float = Field(default=0.05, ge=0.0, le=1.0)
    min_gain_lower_bound: float = Field(default=-0.005, ge=-1.0, le=1.0)
    bootstrap_samples: int = Field(default=2000, ge=100, le=100_000)
    max_test_clients: int | None = Field(default=None, ge=1)
    experiment: str = "polku"
    registered_model_name: str = "polku-ranker"

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.k not in self.eval_k:
            raise ValueError(f"k={self.k} must be one of eval_k={self.eval_k}")
        if self.first_stage_k is not None and self.first_stage_k < self.k:
            raise ValueError(f"first_stage_k={self.first_stage_k} must be >= k={self.k}")
        unknown = sorted(set(self.value_weights) - set(VALUE_STAGES))
        if unknown:
            raise ValueError(f"value_weights: unknown stage(s) {', '.join(unknown)}; use {', '.join(VALUE_STAGES)}")
        if any(not 0.0 <= float(v) <= 100.0 for v in self.value_weights.values()):
            raise ValueError("value_weights: each weight must be between 0 and 100")
        return self

    def flat_params(self) -> dict[str, Any]:
        """Parameters flattened for ``mlflow.log_params`` (nested LightGBM params as ``lgb.<name>``)."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if key == "lgb_params":
                out.update({f"lgb.{k}": v for k, v in value.items()})
            elif key == "value_weights":
                out.update({f"value.{k}": v for k, v in {**DEFAULT_VALUE_WEIGHTS, **value}.items()})
            elif isinstance(value, tuple | list):
                out[key] = ",".join(str(v) for v in value)
            else:
                out[key] = value
        return out
