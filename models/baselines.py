"""Baseline rankers: Job Market Finland style points (the service's fallback) and item popularity."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import numpy as np
import numpy.typing as npt

from models.rankers import Matrix, Ranker, RankerError, Scores, _as_matrix

logger = logging.getLogger(__name__)


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


class _HandSet(Ranker):
    """A ranker set by hand: ``fit`` only binds it to the feature names (the rows and labels are not used)."""

    @abstractmethod
    def bind(self, feature_names: Sequence[str]) -> Self:
        """Resolve the columns the ranker reads in ``feature_names``."""

    def fit(
        self,
        X: Matrix,
        y: npt.ArrayLike,
        group: npt.ArrayLike,
        *,
        feature_names: Sequence[str],
    ) -> Self:
        """Bind to ``feature_names``; the data is not used."""
        del X, y, group
        return self.bind(feature_names)


class PointsRanker(_HandSet):
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


class PopularityRanker(_HandSet):
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
