"""Rankers on the pair feature matrix: LightGBM lambdarank, Job Market Finland style points, popularity.

Every ranker takes the float32 matrix of :class:`features.pairs.PairFeaturizer` and returns one float64 score
per row. ``contributions(X)`` returns an ``(n, n_features + 1)`` matrix whose rows sum to the score (the last
column is the bias), so explanations work the same way for every ranker. Models are saved as JSON plus, for
LightGBM, the booster's native text; nothing is pickled.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from models.compiled import COMPILED_DIR, NOT_COMPILED, CompiledTrees, TreeEngine, load_forest

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.floating[Any]]
Scores = npt.NDArray[np.float64]

RANKER_FILE: Final = "ranker.json"
BOOSTER_FILE: Final = "booster.txt"


class RankerError(ValueError):
    """A ranker was used before fitting, given a matrix of the wrong width, or loaded from a bad directory."""


def _as_matrix(X: npt.ArrayLike, n_features: int) -> npt.NDArray[np.float64]:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, n_features)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise RankerError(f"X: expected a 2-D matrix with {n_features} feature columns, got shape {arr.shape}")
    return arr


def _query_order(group: npt.ArrayLike, n_rows: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Row order that makes each query contiguous (stable), and the group sizes in that order."""
    ids = np.asarray(group)
    if ids.shape != (n_rows,):
        raise RankerError(f"group: expected one query id per row ({n_rows}), got shape {ids.shape}")
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    return order, counts.astype(np.int64)


class Ranker(ABC):
    """One interface for every ranker: fit on (X, y, query ids), score rows, explain rows, save and load."""

    name: ClassVar[str] = "ranker"

    def __init__(self) -> None:
        self.feature_names_: list[str] | None = None

    @property
    def n_features(self) -> int:
        """Number of feature columns the ranker expects."""
        return len(self._names())

    def _names(self) -> list[str]:
        if self.feature_names_ is None:
            raise RankerError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self.feature_names_

    @abstractmethod
    def fit(
        self,
        X: Matrix,
        y: npt.ArrayLike,
        group: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
    ) -> Ranker:
        """Learn from rows ``X`` with graded labels ``y`` and one query id per row in ``group``."""

    @abstractmethod
    def score(self, X: Matrix) -> Scores:
        """One float64 score per row (higher is better)."""

    @abstractmethod
    def contributions(self, X: Matrix) -> Scores:
        """Per-feature contributions, shape ``(n, n_features + 1)``; the last column is the bias; rows sum to score."""

    def explanation(self, X: Matrix, scores: npt.ArrayLike | None = None) -> tuple[Scores, dict[str, Scores] | None]:
        """:meth:`contributions` and :meth:`outcomes` of the same rows (rankers may share work between them)."""
        del scores
        return self.contributions(X), self.outcomes(X)

    def outcomes(self, X: Matrix) -> dict[str, Scores] | None:
        """Per-row outcome estimates (``p_accept``, ``expected_outcome``, ...), or None when the ranker has none."""
        del X
        return None

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """JSON-safe state (without the booster)."""

    @classmethod
    @abstractmethod
    def _from_state(cls, state: Mapping[str, Any], directory: Path) -> Ranker:
        """Rebuild from :meth:`_state` output."""

    def save(self, directory: str | Path) -> Path:
        """Write the ranker into ``directory`` (created if missing) as JSON (+ booster text for LightGBM).

        Returns:
            The directory written.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {"type": self.name, "feature_names": self._names(), **self._state()}
        (path / RANKER_FILE).write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Ranker:
        """Read a ranker written by :meth:`save`; on the base class, dispatch on the saved type.

        Raises:
            RankerError: the directory holds no ranker, an unknown type, or a type other than ``cls``.
        """
        path = Path(directory)
        try:
            state = json.loads((path / RANKER_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RankerError(f"{path / RANKER_FILE}: cannot read ranker state ({exc})") from exc
        kind = state.get("type") if isinstance(state, dict) else None
        registry = ranker_types()
        target = registry.get(str(kind))
        if target is None:
            raise RankerError(f"{path / RANKER_FILE}: unknown ranker type {kind!r}: one of {', '.join(registry)}")
        if cls is not Ranker and not issubclass(target, cls):
            raise RankerError(f"{path / RANKER_FILE}: holds a {kind!r} ranker, not {cls.name!r}")
        names = state.get("feature_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RankerError(f"{path / RANKER_FILE}: feature_names missing or not a list of strings")
        ranker = target._from_state(state, path)
        ranker.feature_names_ = list(names)
        return ranker


# -- LightGBM -------------------------------------------------------------------------------------------------

DEFAULT_LGB_PARAMS: Final[dict[str, Any]] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [5, 10],
    "lambdarank_truncation_level": 20,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}


class LightGBMRanker(Ranker):
    """LambdaMART (LightGBM ``lambdarank``); builds the query groups itself from a query-id per row.

    Args:
        params: LightGBM parameters overriding :data:`DEFAULT_LGB_PARAMS`.
        num_boost_round: maximum number of trees.
        early_stopping_rounds: rounds without improvement on the validation queries before stopping
            (used only when ``fit`` gets ``eval_set``).
    """

    name: ClassVar[str] = "lightgbm"

    def __init__(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        num_boost_round: int = 300,
        early_stopping_rounds: int = 30,
    ) -> None:
        super().__init__()
        self.params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.booster_: Any = None
        self.best_iteration_: int | None = None
        self.compiled_: CompiledTrees | None = None

    def _merged_params(self) -> dict[str, Any]:
        return {**DEFAULT_LGB_PARAMS, **self.params}

    def fit(
        self,
        X: Matrix,
        y: npt.ArrayLike,
        group: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
        eval_set: tuple[Matrix, npt.ArrayLike, npt.ArrayLike] | None = None,
    ) -> LightGBMRanker:
        """Train on rows ``X`` with graded integer labels ``y`` (0..30) and query ids ``group``.

        Args:
            X: feature matrix.
            y: graded relevance per row (non-negative integers).
            group: query id per row; rows of a query need not be contiguous.
            feature_names: one name per column.
            eval_set: optional validation ``(X, y, group)`` for early stopping.

        Returns:
            ``self``.
        """
        import lightgbm as lgb

        names = [str(n) for n in feature_names]
        X_arr = _as_matrix(X, len(names))
        y_arr = np.asarray(y)
        if y_arr.shape != (X_arr.shape[0],):
            raise RankerError(f"y: expected {X_arr.shape[0]} labels, got shape {y_arr.shape}")
        order, sizes = _query_order(group, X_arr.shape[0])
        params = self._merged_params()
        train = lgb.Dataset(
            X_arr[order], label=y_arr[order].astype(np.int32), group=sizes, feature_name=names, free_raw_data=True
        )
        valid_sets: list[Any] = []
        callbacks: list[Any] = []
        if eval_set is not None:
            Xv = _as_matrix(eval_set[0], len(names))
            yv = np.asarray(eval_set[1])
            v_order, v_sizes = _query_order(eval_set[2], Xv.shape[0])
            valid = lgb.Dataset(Xv[v_order], label=yv[v_order].astype(np.int32), group=v_sizes, reference=train)
            valid_sets.append(valid)
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, first_metric_only=False, verbose=False))
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=valid_sets or None,
            valid_names=["valid"] if valid_sets else None,
            callbacks=callbacks or None,
        )
        best = getattr(self.booster_, "best_iteration", 0)
        self.best_iteration_ = int(best) if best and best > 0 else None
        self.feature_names_ = names
        self.compiled_ = None  # compiled from the previous booster, if any
        return self

    def _booster(self) -> Any:
        if self.booster_ is None:
            raise RankerError("LightGBMRanker is not fitted: call fit() or load() first")
        return self.booster_

    def score(self, X: Matrix) -> Scores:
        """Raw lambdarank scores: by the compiled trees when usable here, else by the booster single-threaded."""
        arr = _as_matrix(X, self.n_features)
        if arr.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        if self.compiled_ is not None and self.compiled_.usable:
            return self.compiled_.predict(arr)
        return self.predict_booster(arr)

    @property
    def tree_engine(self) -> TreeEngine:
        """Which code computes the trees (compiled library or booster), and why."""
        return NOT_COMPILED if self.compiled_ is None else self.compiled_.engine

    def predict_booster(self, X: Matrix) -> Scores:
        """LightGBM's own single-threaded prediction (the reference the compiled trees must equal)."""
        out = self._booster().predict(X, num_iteration=self.best_iteration_, num_threads=1)
        return np.asarray(out, dtype=np.float64)

    def contributions(self, X: Matrix) -> Scores:
        """TreeSHAP contributions (``pred_contrib``); the last column is the expected value."""
        booster = self._booster()
        arr = _as_matrix(X, self.n_features)
        if arr.shape[0] == 0:
            return np.empty((0, self.n_features + 1), dtype=np.float64)
        out = booster.predict(arr, num_iteration=self.best_iteration_, pred_contrib=True, num_threads=1)
        return np.asarray(out, dtype=np.float64)

    def feature_importance(self, importance_type: str = "gain") -> dict[str, float]:
        """Importance per feature name (``gain`` or ``split``)."""
        values = self._booster().feature_importance(importance_type=importance_type, iteration=self.best_iteration_)
        return {n: float(v) for n, v in zip(self._names(), values, strict=True)}

    def model_text(self) -> str:
        """The booster in LightGBM's native text format (best iteration only when early stopping ran)."""
        return str(self._booster().model_to_string(num_iteration=self.best_iteration_))

    def _state(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``ranker.json``, the booster text ``booster.txt`` and the compiled trees (``compiled/``) if any."""
        path = super().save(directory)
        (path / BOOSTER_FILE).write_text(self.model_text(), encoding="utf-8")
        if self.compiled_ is not None:
            self.compiled_.save(path / COMPILED_DIR)
        return path

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], directory: Path) -> LightGBMRanker:
        import lightgbm as lgb

        ranker = cls(
            params=state.get("params") or {},
            num_boost_round=int(state.get("num_boost_round", 300)),
            early_stopping_rounds=int(state.get("early_stopping_rounds", 30)),
        )
        try:
            text = (directory / BOOSTER_FILE).read_text(encoding="utf-8")
            ranker.booster_ = lgb.Booster(model_str=text)
        except (OSError, lgb.basic.LightGBMError, ValueError) as exc:
            raise RankerError(f"{directory / BOOSTER_FILE}: cannot read the LightGBM booster ({exc})") from exc
        names = state.get("feature_names") or []
        if list(ranker.booster_.feature_name()) != list(names):
            raise RankerError(f"{directory / BOOSTER_FILE}: booster feature names differ from ranker.json")
        # The booster text read back is what the library was compiled from (saved at the best iteration).
        ranker.compiled_ = load_forest(directory / COMPILED_DIR, text, len(names), ranker.predict_booster)
        return ranker


# -- Job Market Finland style points --------------------------------------------------------------------------


@dataclass(frozen=True)
class PointRule:
    """Points for one feature: ``points * clip(value - threshold, 0, cap)``.

    Attributes:
        feature: feature column name.
        points: points per unit above the threshold (negative = deduction).
        threshold: value below which the rule gives nothing.
        cap: largest counted amount above the threshold (``None`` = no cap).
    """

    feature: str
    points: float
    threshold: float = 0.0
    cap: float | None = 1.0

    def apply(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Points of this rule for a column of feature values."""
        amount = np.clip(values - self.threshold, 0.0, self.cap if self.cap is not None else np.inf)
        return np.asarray(self.points * amount, dtype=np.float64)


# Occupation and skill matches add points; language, education and location mismatches deduct; recent work in
# the same occupation weighs more than a goal alone (anchors.md, Job Market Finland). Rules whose feature the
# featurizer does not produce are skipped, so the table can name several spellings of one idea.
DEFAULT_POINT_RULES: Final[tuple[PointRule, ...]] = (
    PointRule("occ_prior_isco4", 30.0),
    PointRule("occ_prior_isco3", 10.0),
    PointRule("occ_prior_isco2", 5.0),
    PointRule("occ_goal_isco4", 20.0),
    PointRule("occ_goal_isco3", 8.0),
    PointRule("occ_goal_isco2", 4.0),
    PointRule("ess_cov", 40.0),
    PointRule("opt_cov", 10.0),
    PointRule("goal_skill_gain", 10.0),
    PointRule("recog_met", 5.0),
    PointRule("lang_gap_best", -8.0, cap=None),
    PointRule("lit_gap", -10.0, cap=None),
    PointRule("digital_gap", -5.0, cap=None),
    PointRule("edu_gap", -10.0, cap=3.0),
    PointRule("dist_km", -0.5, threshold=10.0, cap=60.0),
)


class PointsRanker(Ranker):
    """Job Market Finland style points on named feature columns; no learning.

    Args:
        rules: point rules (default :data:`DEFAULT_POINT_RULES`).
    """

    name: ClassVar[str] = "points"

    def __init__(self, *, rules: Sequence[PointRule] | None = None) -> None:
        super().__init__()
        self.rules = tuple(rules if rules is not None else DEFAULT_POINT_RULES)
        self.active_rules_: list[tuple[int, PointRule]] = []

    def bind(self, feature_names: Sequence[str]) -> PointsRanker:
        """Attach the rules to the columns of a featurizer's matrix (what ``fit`` does).

        Returns:
            ``self``.
        """
        names = [str(n) for n in feature_names]
        pos = {n: i for i, n in enumerate(names)}
        self.active_rules_ = [(pos[r.feature], r) for r in self.rules if r.feature in pos]
        skipped = sorted({r.feature for r in self.rules} - set(pos))
        if skipped:
            logger.debug("points ranker: no column for rules %s", skipped)
        if not self.active_rules_:
            raise RankerError("PointsRanker: none of the rule features is among the feature names")
        self.feature_names_ = names
        return self

    def fit(
        self,
        X: Matrix,
        y: npt.ArrayLike,
        group: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
    ) -> PointsRanker:
        """Bind the rules to ``feature_names``; the data is not used (points are set by hand)."""
        del X, y, group
        return self.bind(feature_names)

    def contributions(self, X: Matrix) -> Scores:
        """Points per feature column (summed over the rules on it); bias column 0."""
        arr = _as_matrix(X, self.n_features)
        out = np.zeros((arr.shape[0], self.n_features + 1), dtype=np.float64)
        for col, rule in self.active_rules_:
            out[:, col] += rule.apply(arr[:, col])
        return out

    def score(self, X: Matrix) -> Scores:
        """Total points per row."""
        return self.contributions(X).sum(axis=1)

    def _state(self) -> dict[str, Any]:
        return {"rules": [asdict(r) for r in self.rules]}

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], directory: Path) -> PointsRanker:
        del directory
        try:
            rules = [PointRule(**r) for r in state["rules"]]
        except (KeyError, TypeError) as exc:
            raise RankerError(f"points ranker state: bad rules ({exc})") from exc
        ranker = cls(rules=rules)
        return ranker.bind(state["feature_names"])


# -- popularity -----------------------------------------------------------------------------------------------


class PopularityRanker(Ranker):
    """Ranks by the item's smoothed historical acceptance rate (the same for every client).

    Args:
        feature: column holding the smoothed acceptance rate.
    """

    name: ClassVar[str] = "popularity"

    def __init__(self, *, feature: str = "hist_accept_rate") -> None:
        super().__init__()
        self.feature = feature
        self.column_: int | None = None

    def bind(self, feature_names: Sequence[str]) -> PopularityRanker:
        """Find the acceptance column among ``feature_names``.

        Returns:
            ``self``.
        """
        names = [str(n) for n in feature_names]
        if self.feature not in names:
            raise RankerError(f"PopularityRanker: feature {self.feature!r} is not among the feature names")
        self.column_ = names.index(self.feature)
        self.feature_names_ = names
        return self

    def fit(
        self,
        X: Matrix,
        y: npt.ArrayLike,
        group: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
    ) -> PopularityRanker:
        """Bind to ``feature_names``; the rate itself is learnt by the featurizer from the training period."""
        del X, y, group
        return self.bind(feature_names)

    def contributions(self, X: Matrix) -> Scores:
        """The acceptance rate in its own column; everything else 0."""
        arr = _as_matrix(X, self.n_features)
        out = np.zeros((arr.shape[0], self.n_features + 1), dtype=np.float64)
        assert self.column_ is not None
        out[:, self.column_] = arr[:, self.column_]
        return out

    def score(self, X: Matrix) -> Scores:
        """The acceptance rate column."""
        arr = _as_matrix(X, self.n_features)
        assert self.column_ is not None
        return arr[:, self.column_].astype(np.float64)

    def _state(self) -> dict[str, Any]:
        return {"feature": self.feature}

    @classmethod
    def _from_state(cls, state: Mapping[str, Any], directory: Path) -> PopularityRanker:
        del directory
        return cls(feature=str(state.get("feature", "hist_accept_rate"))).bind(state["feature_names"])


RANKERS: Final[dict[str, type[Ranker]]] = {
    LightGBMRanker.name: LightGBMRanker,
    PointsRanker.name: PointsRanker,
    PopularityRanker.name: PopularityRanker,
}


def ranker_types() -> dict[str, type[Ranker]]:
    """Every ranker type that :meth:`Ranker.load` can rebuild, by saved name."""
    from models.outcome import OutcomeAwareRanker  # imports this module: registered here, not at import time

    return {**RANKERS, OutcomeAwareRanker.name: OutcomeAwareRanker}


def load_ranker(directory: str | Path) -> Ranker:
    """Load any ranker saved with :meth:`Ranker.save` (dispatches on the saved type)."""
    return Ranker.load(directory)
