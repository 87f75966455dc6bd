"""Outcome-aware ranking: what a client is likely to take up, kept apart from what is likely to work for them.

Recorded history mixes two things: the client's *choice* (which suggestion they accept) and the *outcome* (did
they start, complete, find work). Choices carry preferences that do not pay off (in the synthetic world, and in
the centres' figures, clients strongly prefer degree routes), so a ranker trained on what was chosen learns the
preference, not what worked. :class:`OutcomeAwareRanker` keeps the two apart:

1. **Acceptance model.** LightGBM lambdarank on "accepted" within each recorded (client, kind) query, over the
   pair features without the item-history columns (:data:`features.pairs.ITEM_HISTORY_FEATURES`); its score
   ``f`` is calibrated by a conditional logit over the recorded slates with a "none" option per kind and a
   position term (:func:`fit_slate_logit`): ``z = scale * f + item_accept_effect`` is the acceptance utility,
   and ``p_accept = sigmoid(z - none[kind])`` the chance the client takes the item up when it is suggested first.
2. **Outcome models.** Penalised logistic regressions on the utility ``z``: *started given accepted* and
   *completed given started* share one set of route offsets ``c[route]`` (what a route's acceptance promises
   beyond what its outcomes deliver, shrunk toward 0 with a penalty chosen by client-grouped cross-validation);
   *employed given completed* has base rates per kind and route, so employment is credited only above the
   route's own base rate (a route is not credited for its intake). Each stage adds the item's outcome effect.
3. **One score.** With weights from ``TrainConfig`` (logged with the run)::

       expected_outcome = p_start * (w_start + p_complete * (w_complete + w_employ * (p_employ - base_employ)))
       score            = expected_outcome + w_accept * p_accept

   ``expected_outcome`` is E[value | accepted]: each stage reached counts ``w`` and employment counts only
   above the base rate of the item's route and kind. ``w_accept`` (default 0) lets acceptance itself weigh in;
   the suggestion shows ``p_accept`` beside the score either way, so the counsellor sees both.

Explanations use the *utility index* ``u = z + c[route] / slope + outcome_effect / slope`` (the ranking
score is increasing in it): per-feature TreeSHAP contributions of ``f`` times ``scale``, the item effects and
the route offset in their own columns, all multiplied by the local slope of the score in ``u`` so that each
row of :meth:`OutcomeAwareRanker.contributions` sums to the score.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from features.pairs import ITEM_HISTORY_FEATURES
from features.records import KINDS, ROUTES
from models.logit import choose_penalty, fit_logistic
from models.rankers import (
    BoosterTrainer,
    LightGBMRanker,
    Matrix,
    Ranker,
    RankerError,
    Scores,
    _as_matrix,
    one_hot_columns,
)
from models.slates import SlateLogit, fit_slate_logit

ACCEPTANCE_DIR: Final = "acceptance"
DEFAULT_WEIGHTS: Final[dict[str, float]] = {"start": 1.0, "complete": 1.0, "employ": 1.0, "accept": 0.0}
"""Value of each outcome stage in the ranking score (see the module docstring)."""
OUTCOME_KEYS: Final[tuple[str, ...]] = tuple(
    "p_accept p_start p_complete p_employ employ_base expected_outcome utility item_history".split()
)

FloatArray = npt.NDArray[np.float64]


# -- the ranker ---------------------------------------------------------------------------------------------------
class OutcomeAwareRanker(Ranker):
    """Acceptance model plus outcome models, combined into one score (see the module docstring).

    Args:
        params: LightGBM parameters of the acceptance model (over ``models.rankers.DEFAULT_LGB_PARAMS``).
        num_boost_round: maximum trees of the acceptance model.
        early_stopping_rounds: rounds without improvement of validation NDCG on *shown* rows before stopping.
        weights: ``start``, ``complete``, ``employ``, ``accept`` (default :data:`DEFAULT_WEIGHTS`).
        seed: seed of the cross-validation folds.
    """

    name: ClassVar[str] = "outcome_lightgbm"

    def __init__(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        num_boost_round: int = 800,
        early_stopping_rounds: int = 150,
        weights: Mapping[str, float] | None = None,
        seed: int = 7,
        booster_trainer: BoosterTrainer | None = None,
    ) -> None:
        super().__init__()
        self.booster_trainer = booster_trainer  # the acceptance model's distributed trainer (not saved)
        self.params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        merged = {**DEFAULT_WEIGHTS, **dict(weights or {})}
        unknown = sorted(set(merged) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise RankerError(f"weights: unknown stage(s) {', '.join(unknown)}: use {', '.join(DEFAULT_WEIGHTS)}")
        self.weights = {k: float(v) for k, v in merged.items()}
        self.seed = seed
        self.acceptance_: LightGBMRanker | None = None
        self.acceptance_columns_: list[int] = []
        self.calibration_: SlateLogit | None = None
        self.stages_: dict[str, Any] = {}
        self.reference_: dict[str, list[float]] = {}
        self.diagnostics_: dict[str, Any] = {}

    # -- column bookkeeping -----------------------------------------------------------------------------------
    def _bind(self, feature_names: Sequence[str]) -> None:
        names = [str(n) for n in feature_names]
        self.feature_names_ = names
        self._kind_cols = one_hot_columns(names, "kind_", KINDS)
        self._route_cols = one_hot_columns(names, "route_", ROUTES)
        missing = [n for n in ("item_accept_effect", "item_outcome_effect") if n not in names]
        if missing:
            raise RankerError(f"OutcomeAwareRanker needs the columns {', '.join(missing)}")
        self._accept_effect_col = names.index("item_accept_effect")
        self._history_col = names.index("item_history_n") if "item_history_n" in names else -1
        self._outcome_effect_col = names.index("item_outcome_effect")
        self.acceptance_columns_ = [i for i, n in enumerate(names) if n not in ITEM_HISTORY_FEATURES]

    def _kinds(self, X: FloatArray) -> npt.NDArray[np.int64]:
        return np.asarray(np.argmax(X[:, self._kind_cols], axis=1), dtype=np.int64)

    def _routes(self, X: FloatArray) -> FloatArray:
        return np.asarray(X[:, self._route_cols], dtype=np.float64)

    # -- fitting, step by step (training.outcome_training runs the steps with the item effects in between) --------
    def fit_acceptance(
        self,
        X: Matrix,
        y: npt.ArrayLike,
        group: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
        eval_set: tuple[Matrix, npt.ArrayLike, npt.ArrayLike] | None = None,
        sample_weight: npt.ArrayLike | None = None,
    ) -> OutcomeAwareRanker:
        """Fit the acceptance lambdarank on ``y >= 1`` (accepted) per query.

        Args:
            X: feature rows (full width; the item-history columns are left out here).
            y: graded labels (0 shown or unshown, 1 accepted, 2 started, 3 completed, 4 employed).
            group: query id per row.
            feature_names: column names of ``X``.
            eval_set: validation ``(X, y, group)`` for early stopping; pass *shown* rows only, since unshown
                negatives are a training device and make validation NDCG nearly constant.
            sample_weight: per-row weights of the lambdarank (e.g. inverse-propensity weights), None = all 1.

        Returns:
            ``self``.
        """
        self._bind(feature_names)
        arr = _as_matrix(X, len(self._names()))
        cols = self.acceptance_columns_
        accepted = (np.asarray(y) >= 1).astype(np.int32)
        eval_cut = None
        if eval_set is not None and len(np.asarray(eval_set[1])) > 0:
            ev = _as_matrix(eval_set[0], len(self._names()))
            eval_cut = (ev[:, cols], (np.asarray(eval_set[1]) >= 1).astype(np.int32), eval_set[2])
        ranker = LightGBMRanker(
            params=self.params,
            num_boost_round=self.num_boost_round,
            early_stopping_rounds=self.early_stopping_rounds,
            booster_trainer=self.booster_trainer,
        )
        self.acceptance_ = ranker.fit(
            arr[:, cols],
            accepted,
            group,
            feature_names=[self._names()[i] for i in cols],
            eval_set=eval_cut,
            sample_weight=sample_weight,
        )
        return self

    def acceptance_score(self, X: Matrix) -> Scores:
        """The acceptance model's raw score ``f`` per row."""
        if self.acceptance_ is None:
            raise RankerError("OutcomeAwareRanker is not fitted: call fit() or load() first")
        arr = _as_matrix(X, self.n_features)
        return self.acceptance_.score(arr[:, self.acceptance_columns_])

    def set_calibration(self, calibration: SlateLogit) -> OutcomeAwareRanker:
        """Use a fitted :class:`SlateLogit` (from :func:`fit_slate_logit`) to turn ``f`` into utilities."""
        self.calibration_ = calibration
        return self

    def _calibration(self) -> SlateLogit:
        if self.calibration_ is None:
            raise RankerError("OutcomeAwareRanker: acceptance is not calibrated (set_calibration or fit first)")
        return self.calibration_

    def acceptance_utility(self, X: Matrix) -> Scores:
        """``z = scale * f + item_accept_effect`` per row (logit units, first position)."""
        arr = _as_matrix(X, self.n_features)
        return np.asarray(
            self._calibration().scale * self.acceptance_score(arr) + arr[:, self._accept_effect_col], dtype=np.float64
        )

    def fit_outcomes(self, X: Matrix, y: npt.ArrayLike, client_ids: npt.ArrayLike) -> OutcomeAwareRanker:
        """Fit the outcome stages on rows that reached the previous stage (penalties by grouped CV).

        Args:
            X: feature rows (with this ranker's columns; item effects filled in, left-one-client-out).
            y: graded labels (>= 1 accepted, >= 2 started, >= 3 completed, 4 employed).
            client_ids: client per row (the cross-validation groups).

        Returns:
            ``self``.
        """
        arr = _as_matrix(X, self.n_features)
        lab = np.asarray(y, dtype=np.int64)
        groups = np.asarray(client_ids)
        z = self.acceptance_utility(arr)
        kind, routes = self._kinds(arr), self._routes(arr)
        omega = arr[:, self._outcome_effect_col].astype(np.float64)
        # started | accepted and completed | started, pooled with shared route offsets
        rows, stage = [], []
        for s, lo in enumerate((1, 2)):
            r = np.flatnonzero(lab >= lo)
            rows.append(r)
            stage.append(np.full(r.size, s))
        r_all, s_all = np.concatenate(rows), np.concatenate(stage)
        Z = self._pooled_design(z[r_all], kind[r_all], routes[r_all], s_all)
        target = (lab[r_all] >= np.where(s_all == 0, 2, 3)).astype(np.float64)
        penalised = np.r_[np.zeros(2 + 2 * len(KINDS)), np.ones(len(ROUTES))]
        lam, cv = choose_penalty(Z, target, penalised, omega[r_all], groups[r_all], self.seed)
        w = fit_logistic(Z, target, penalised, lam, omega[r_all])
        n_k = len(KINDS)
        # employed | completed, base rates per kind and route (route coefficients shrunk toward the kind's)
        r3 = np.flatnonzero(lab >= 3)
        Z3 = np.column_stack([z[r3], np.eye(n_k)[kind[r3]], routes[r3]])
        target3 = (lab[r3] >= 4).astype(np.float64)
        penalised3 = np.r_[np.zeros(1 + n_k), np.ones(len(ROUTES))]
        lam3, cv3 = choose_penalty(Z3, target3, penalised3, omega[r3], groups[r3], self.seed + 1)
        w3 = fit_logistic(Z3, target3, penalised3, lam3, omega[r3])
        overall = float(z[r3].mean()) if r3.size else 0.0
        z_ref = [float(z[r3][kind[r3] == k].mean()) if np.any(kind[r3] == k) else overall for k in range(n_k)]
        self.stages_ = {
            "start_slope": float(w[0]),
            "complete_slope": float(w[1]),
            "start_intercept": [float(v) for v in w[2 : 2 + n_k]],
            "complete_intercept": [float(v) for v in w[2 + n_k : 2 + 2 * n_k]],
            "route_offset": [float(v) for v in w[2 + 2 * n_k :]],
            "employ_slope": float(w3[0]),
            "employ_intercept": [float(v) for v in w3[1 : 1 + n_k]],
            "employ_route": [float(v) for v in w3[1 + n_k :]],
            "employ_reference_utility": z_ref,
        }
        self.diagnostics_ = {
            "route_penalty": lam,
            "employ_route_penalty": lam3,
            "route_penalty_cv": {str(k): v for k, v in cv.items()},
            "employ_route_penalty_cv": {str(k): v for k, v in cv3.items()},
            "rows": {"accepted": int(rows[0].size), "started": int(rows[1].size), "completed": int(r3.size)},
        }
        self._set_reference(arr)
        return self

    @staticmethod
    def _pooled_design(
        z: FloatArray, kind: npt.NDArray[np.int64], routes: FloatArray, stage: npt.NDArray[np.int64]
    ) -> FloatArray:
        n_k = len(KINDS)
        S = np.column_stack([stage == 0, stage == 1]).astype(np.float64)
        K = np.eye(n_k)[kind]
        SK = (S[:, :, None] * K[:, None, :]).reshape(len(z), 2 * n_k)
        return np.column_stack([z[:, None] * S, SK, routes])

    def _set_reference(self, X: FloatArray) -> None:
        """Per-kind means of the outcome terms over the fitting rows (the yardstick of outcome reasons)."""
        out = self.outcomes(X)
        kind = self._kinds(X)
        ref: dict[str, list[float]] = {}
        for key in ("p_accept", "p_start", "p_complete"):
            values = out[key] if key != "p_complete" else out["p_start"] * out["p_complete"]
            ref[key] = [float(values[kind == k].mean()) if np.any(kind == k) else float("nan") for k in range(3)]
        self.reference_ = ref

    # -- the Ranker interface ------------------------------------------------------------------------------------
    def fit(
        self,
        X: Matrix,
        y: npt.ArrayLike,
        group: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
        eval_set: tuple[Matrix, npt.ArrayLike, npt.ArrayLike] | None = None,
        position: npt.ArrayLike | None = None,
        client_ids: npt.ArrayLike | None = None,
    ) -> OutcomeAwareRanker:
        """All steps on one table, without item effects (``training.outcome_training`` adds them).

        Args:
            X: feature rows.
            y: graded labels.
            group: query id per row (a recorded slate when ``position`` is given).
            feature_names: column names.
            eval_set: validation rows for early stopping (shown rows only).
            position: slate position per row, negative for rows that were not shown (default: every row of a
                query counts as shown at position 0).
            client_ids: cross-validation groups of the outcome stages (default: the query ids).

        Returns:
            ``self``.
        """
        self.fit_acceptance(X, y, group, feature_names=feature_names, eval_set=eval_set)
        arr = _as_matrix(X, self.n_features)
        lab = np.asarray(y, dtype=np.int64)
        pos = np.zeros(len(lab)) if position is None else np.asarray(position, np.float64)
        shown = pos >= 0
        f = self.acceptance_score(arr)
        self.set_calibration(
            fit_slate_logit(
                f[shown],
                pos[shown],
                np.zeros(int(shown.sum())),
                np.asarray(group)[shown],
                self._kinds(arr)[shown],
                lab[shown] >= 1,
            )
        )
        return self.fit_outcomes(arr, lab, np.asarray(group) if client_ids is None else client_ids)

    def _stage_logits(self, z: FloatArray, kind: npt.NDArray[np.int64], routes: FloatArray, omega: FloatArray) -> Any:
        st = self.stages_
        if not st:
            raise RankerError("OutcomeAwareRanker: outcome stages are not fitted (fit_outcomes or fit first)")
        route_offset = routes @ np.asarray(st["route_offset"])
        employ_route = routes @ np.asarray(st["employ_route"])
        ls = st["start_slope"] * z + np.asarray(st["start_intercept"])[kind] + route_offset + omega
        lc = st["complete_slope"] * z + np.asarray(st["complete_intercept"])[kind] + route_offset + omega
        base = st["employ_slope"] * np.asarray(st["employ_reference_utility"])[kind]
        base = base + np.asarray(st["employ_intercept"])[kind] + employ_route
        le = st["employ_slope"] * z + np.asarray(st["employ_intercept"])[kind] + employ_route + omega
        return ls, lc, le, base, route_offset

    def _mean_slope(self) -> float:
        slope = 0.5 * (self.stages_["start_slope"] + self.stages_["complete_slope"])
        return float(slope) if slope > 1e-6 else 1e-6

    def _combine(self, z: FloatArray, X: FloatArray) -> dict[str, FloatArray]:
        kind, routes = self._kinds(X), self._routes(X)
        omega = X[:, self._outcome_effect_col].astype(np.float64)
        ls, lc, le, base_logit, route_offset = self._stage_logits(z, kind, routes, omega)
        p_s, p_c, p_e, base = expit(ls), expit(lc), expit(le), expit(base_logit)
        w = self.weights
        value = p_s * (w["start"] + p_c * (w["complete"] + w["employ"] * (p_e - base)))
        p_accept = expit(z - np.asarray(self._calibration().none)[kind])
        return {
            "p_accept": p_accept,
            "p_start": p_s,
            "p_complete": p_c,
            "p_employ": p_e,
            "employ_base": base,
            "expected_outcome": value,
            "utility": z + (route_offset + omega) / self._mean_slope(),
            "score": value + w["accept"] * p_accept,
        }

    def outcomes(self, X: Matrix) -> dict[str, Scores]:
        """Outcome estimates per row (empty arrays for no rows).

        Keys: ``p_accept``, ``p_start`` (given accepted), ``p_complete`` (given started), ``p_employ`` (given
        completed), ``employ_base`` (the route's and kind's base rate), ``expected_outcome``, the ``utility``
        index, and ``item_history`` (times the item was shown in the training period).
        """
        arr = _as_matrix(X, self.n_features)
        if arr.shape[0] == 0:
            return {k: np.zeros(0) for k in OUTCOME_KEYS}
        out = self._combine(self.acceptance_utility(arr), arr)
        history = np.expm1(arr[:, self._history_col]) if self._history_col >= 0 else np.full(len(arr), np.nan)
        return {**{k: out[k] for k in OUTCOME_KEYS if k in out}, "item_history": np.asarray(history, np.float64)}

    def score(self, X: Matrix) -> Scores:
        """``expected_outcome + w_accept * p_accept`` per row."""
        arr = _as_matrix(X, self.n_features)
        if arr.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self._combine(self.acceptance_utility(arr), arr)["score"], dtype=np.float64)

    def contributions(self, X: Matrix) -> Scores:
        """Contributions to the utility index, scaled by the score's local slope in it; rows sum to the score."""
        return self.explanation(X, self.score(X))[0]

    def explanation(self, X: Matrix, scores: npt.ArrayLike | None = None) -> tuple[Scores, dict[str, Scores] | None]:
        """Contributions and outcomes of rows with one call into the trees (TreeSHAP gives the score too).

        Args:
            X: rows (e.g. the top items of a request).
            scores: their scores from :meth:`score`, when known: the contributions then sum to them exactly.

        Returns:
            ``(contributions, outcomes)`` as :meth:`contributions` and :meth:`outcomes` return them.
        """
        arr = _as_matrix(X, self.n_features)
        n, m = arr.shape[0], self.n_features
        if n == 0:
            return np.empty((0, m + 1), dtype=np.float64), {k: np.zeros(0) for k in OUTCOME_KEYS}
        assert self.acceptance_ is not None
        cal = self._calibration()
        phi = self.acceptance_.contributions(arr[:, self.acceptance_columns_])
        z = cal.scale * phi.sum(axis=1) + arr[:, self._accept_effect_col]  # SHAP rows sum to the raw score
        contrib = np.zeros((n, m + 1), dtype=np.float64)
        contrib[:, self.acceptance_columns_] = cal.scale * phi[:, :-1]
        slope = self._mean_slope()
        contrib[:, self._accept_effect_col] = arr[:, self._accept_effect_col]
        contrib[:, self._outcome_effect_col] = arr[:, self._outcome_effect_col] / slope
        routes = self._routes(arr)
        contrib[:, self._route_cols] += routes * (np.asarray(self.stages_["route_offset"]) / slope)
        h = 1e-3
        out = self._combine(z, arr)
        gain = (self._combine(z + h, arr)["score"] - self._combine(z - h, arr)["score"]) / (2 * h)
        gain = np.maximum(gain, 0.0)
        contrib[:, :m] *= gain[:, None]
        total = out["score"] if scores is None else np.asarray(scores, dtype=np.float64)
        contrib[:, m] = total - contrib[:, :m].sum(axis=1)
        history = np.expm1(arr[:, self._history_col]) if self._history_col >= 0 else np.full(n, np.nan)
        outcomes = {**{k: out[k] for k in OUTCOME_KEYS if k in out}, "item_history": np.asarray(history, np.float64)}
        return contrib, outcomes

    def feature_importance(self, importance_type: str = "gain") -> dict[str, float]:
        """Importance per feature of the acceptance model (item-history columns, which it does not use, get 0)."""
        assert self.acceptance_ is not None
        inner = self.acceptance_.feature_importance(importance_type)
        return {n: float(inner.get(n, 0.0)) for n in self._names()}

    @property
    def best_iteration_(self) -> int | None:
        """Trees kept by early stopping in the acceptance model."""
        return None if self.acceptance_ is None else self.acceptance_.best_iteration_

    # -- persistence -------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        cal = self._calibration()
        return {
            "params": self.params,
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
            "weights": self.weights,
            "seed": self.seed,
            "calibration": {
                "scale": cal.scale,
                "position_coef": cal.position_coef,
                "show_coef": cal.show_coef,
                "none": list(cal.none),
            },
            "stages": self.stages_,
            "reference": self.reference_,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``ranker.json`` and the acceptance model under ``acceptance/``."""
        if self.acceptance_ is None:
            raise RankerError("OutcomeAwareRanker is not fitted: nothing to save")
        path = super().save(directory)
        self.acceptance_.save(path / ACCEPTANCE_DIR)
        return path

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], directory: Path) -> OutcomeAwareRanker:
        try:
            ranker = cls(
                params=state.get("params") or {},
                num_boost_round=int(state.get("num_boost_round", 800)),
                early_stopping_rounds=int(state.get("early_stopping_rounds", 150)),
                weights=state.get("weights") or {},
                seed=int(state.get("seed", 7)),
            )
            cal = state["calibration"]
            ranker.calibration_ = SlateLogit(
                float(cal["scale"]),
                float(cal["position_coef"]),
                float(cal["show_coef"]),
                tuple(float(v) for v in cal["none"]),
            )
            ranker.stages_ = dict(state["stages"])
            ranker.reference_ = {str(k): [float(v) for v in vs] for k, vs in dict(state.get("reference", {})).items()}
            ranker._bind(state["feature_names"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RankerError(f"outcome ranker state: {exc}") from exc
        inner = Ranker.load(directory / ACCEPTANCE_DIR)
        if not isinstance(inner, LightGBMRanker):
            raise RankerError(f"{directory / ACCEPTANCE_DIR}: the acceptance model is not a LightGBM ranker")
        expected = [ranker._names()[i] for i in ranker.acceptance_columns_]
        if inner.feature_names_ != expected:
            raise RankerError(f"{directory / ACCEPTANCE_DIR}: acceptance model columns differ from ranker.json")
        ranker.acceptance_ = inner
        return ranker


def describe(ranker: OutcomeAwareRanker) -> str:
    """A short JSON summary of the fitted parameters (for logs and the MLflow run)."""
    state = ranker._state()
    return json.dumps({k: state[k] for k in ("weights", "calibration", "stages")}, indent=1)
