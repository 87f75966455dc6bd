"""The ranker interface and the LightGBM lambdarank ranker (baselines in ``models.baselines``).

Every ranker takes the float32 matrix of :class:`features.pairs.PairFeaturizer` and returns one float64 score
per row. ``contributions(X)`` returns an ``(n, n_features + 1)`` matrix whose rows sum to the score (the last
column is the bias), so explanations work the same way for every ranker. Models are saved as JSON plus, for
LightGBM, the booster's native text; nothing is pickled.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
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


def _best_iteration(booster: Any, X: Matrix, y: npt.ArrayLike, sizes: npt.NDArray[np.int64], patience: int) -> int:
    """Early stopping after the fact: the iteration LightGBM's early stopping on validation NDCG@10 would keep.

    For boosters trained where early stopping is unavailable (``lightgbm.dask``): each tree's raw output on the
    validation rows (sorted by query, ``sizes`` rows per query) is added in turn, and the best mean NDCG@10 is
    kept until ``patience`` trees bring no improvement.
    """
    rel = np.asarray(y, dtype=np.float64)
    query = np.repeat(np.arange(sizes.size), sizes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    ideal_order = np.lexsort((-rel, query))
    rank = np.arange(rel.size) - starts[query]
    discount = np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)
    ideal = np.bincount(query, weights=(2.0 ** rel[ideal_order] - 1) * discount, minlength=sizes.size)
    has = ideal > 0
    raw = np.zeros(rel.size)
    best, best_at = -np.inf, 1
    for it in range(int(booster.num_trees())):
        raw += booster.predict(X, start_iteration=it, num_iteration=1, raw_score=True)
        order = np.lexsort((np.arange(rel.size), -raw, query))
        dcg = np.bincount(query, weights=(2.0 ** rel[order] - 1) * discount, minlength=sizes.size)
        ndcg = float(np.mean(dcg[has] / ideal[has])) if has.any() else 0.0
        if ndcg > best:
            best, best_at = ndcg, it + 1
        elif it + 1 - best_at >= patience:
            break
    return best_at


def one_hot_columns(names: Sequence[str], prefix: str, values: Sequence[str]) -> list[int]:
    """Positions of the one-hot columns ``prefix + value`` in ``names``, in the order of ``values``."""
    pos = {n: i for i, n in enumerate(names)}
    missing = [f"{prefix}{v}" for v in values if f"{prefix}{v}" not in pos]
    if missing:
        raise RankerError(f"the ranker needs the columns {', '.join(missing)}")
    return [pos[f"{prefix}{v}"] for v in values]


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


# Trains a LightGBM booster elsewhere (e.g. ``lightgbm.dask`` on a cluster) for ``polku train --dask``:
# (params, X, y, group_sizes, feature_names, num_boost_round) -> Booster, with rows sorted by query.
BoosterTrainer = Callable[[dict[str, Any], Matrix, npt.NDArray[np.int32], npt.NDArray[np.int64], list[str], int], Any]


class LightGBMRanker(Ranker):
    """LambdaMART (LightGBM ``lambdarank``); builds the query groups itself from a query-id per row.

    Args:
        params: LightGBM parameters overriding :data:`DEFAULT_LGB_PARAMS`.
        num_boost_round: maximum number of trees.
        early_stopping_rounds: rounds without improvement on the validation queries before stopping
            (used only when ``fit`` gets ``eval_set``).
        booster_trainer: train the booster with this instead of ``lightgbm.train`` in process (distributed
            training; no early stopping there, so all ``num_boost_round`` trees are grown). Not saved.
    """

    name: ClassVar[str] = "lightgbm"

    def __init__(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        num_boost_round: int = 300,
        early_stopping_rounds: int = 30,
        booster_trainer: BoosterTrainer | None = None,
    ) -> None:
        super().__init__()
        self.params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.booster_trainer = booster_trainer
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
        sample_weight: npt.ArrayLike | None = None,
    ) -> LightGBMRanker:
        """Train on rows ``X`` with graded integer labels ``y`` (0..30) and query ids ``group``.

        Args:
            X: feature matrix.
            y: graded relevance per row (non-negative integers).
            group: query id per row; rows of a query need not be contiguous.
            feature_names: one name per column.
            eval_set: optional validation ``(X, y, group)`` for early stopping.
            sample_weight: optional weight per row (LightGBM scales each row's lambdarank gradient by it), e.g.
                inverse-propensity weights of logged rows.

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
        if self.booster_trainer is not None:
            if sample_weight is not None:
                raise RankerError("sample weights are not supported by a distributed booster trainer (--dask)")
            y_sorted = y_arr[order].astype(np.int32)
            sizes_arr = np.asarray(sizes, dtype=np.int64)
            self.booster_ = self.booster_trainer(params, X_arr[order], y_sorted, sizes_arr, names, self.num_boost_round)
            self.best_iteration_ = None
            if eval_set is not None:
                Xv = _as_matrix(eval_set[0], len(names))
                v_order, v_sizes = _query_order(eval_set[2], Xv.shape[0])
                yv = np.asarray(eval_set[1])[v_order]
                self.best_iteration_ = _best_iteration(
                    self.booster_, Xv[v_order], yv, v_sizes, self.early_stopping_rounds
                )
            self.feature_names_ = names
            self.compiled_ = None
            return self
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)[order]
        train = lgb.Dataset(
            X_arr[order],
            label=y_arr[order].astype(np.int32),
            group=sizes,
            weight=weight,
            feature_name=names,
            free_raw_data=True,
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


def ranker_types() -> dict[str, type[Ranker]]:
    """Every ranker type that :meth:`Ranker.load` can rebuild, by saved name."""
    # These modules import this one, so they are registered on first use rather than at import time.
    from models.baselines import PointsRanker, PopularityRanker
    from models.outcome import OutcomeAwareRanker

    return {cls.name: cls for cls in (LightGBMRanker, PointsRanker, PopularityRanker, OutcomeAwareRanker)}


def load_ranker(directory: str | Path) -> Ranker:
    """Load any ranker saved with :meth:`Ranker.save` (dispatches on the saved type)."""
    return Ranker.load(directory)
