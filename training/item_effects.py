"""Item-quality estimates: how much better (or worse) an item does than its features say, by empirical Bayes.

Some items work better than their features show (a good teacher, a welcoming employer). Three recorded signals
carry that, each compared with what a feature model expects for the same (client, item) pairs:

* **shown**: counsellors chose to show the item more (or less) often than a model of their choices over the
  item's features predicts (:func:`show_expectations`, cross-fitted by client);
* **accepted**: clients took it up more often than the calibrated acceptance model predicts in its slates;
* **outcomes**: accepted clients started, completed and found work more often than the outcome models predict.

Each is an observed count ``O`` against an expected count ``E`` per item. The item's effect is the posterior
mean log-ratio under a Poisson-gamma model, ``log((O + a) / (E + a))``, with the prior strength ``a`` chosen per
kind by maximising the negative-binomial marginal likelihood (:func:`prior_strength`): items with little history
are pulled to 0, which is the prior of their route and kind (the feature models already know routes and kinds).
An item with no history at all gets exactly 0. For the training rows the effect leaves the row's own client out,
so a row never sees its own label through its item's effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln

from features.records import KINDS

FloatArray = npt.NDArray[np.float64]
_GRID: Final = np.exp(np.linspace(np.log(0.1), np.log(1e4), 121))
"""Prior strengths tried (pseudo-counts); the largest means "no detectable item effect"."""
SHOW_MODEL_PARAMS: Final[dict[str, Any]] = {
    "objective": "binary",
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "learning_rate": 0.05,
    "feature_fraction": 0.8,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}
SHOW_MODEL_ROUNDS: Final = 200


def prior_strength(observed: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """Gamma prior strength ``a`` (prior mean ratio 1) maximising the negative-binomial marginal likelihood.

    Args:
        observed: observed counts per item (non-negative).
        expected: expected counts per item under the feature model (positive entries are used).

    Returns:
        The best ``a`` on a log grid from 0.1 to 10,000 (10,000 when there are no items with expectations).
    """
    o = np.asarray(observed, np.float64)
    e = np.asarray(expected, np.float64)
    keep = e > 1e-9
    o, e = np.maximum(o[keep], 0.0), e[keep]
    if o.size == 0:
        return float(_GRID[-1])
    a = _GRID[:, None]
    ll = gammaln(o + a) - gammaln(a) + a * np.log(a / (a + e)) + o * np.log(e / (a + e))
    return float(_GRID[int(np.argmax(ll.sum(axis=1)))])


def shrunk_log_ratio(
    observed: npt.ArrayLike, expected: npt.ArrayLike, groups: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Posterior mean log-ratios ``log((O + a) / (E + a))`` with ``a`` fitted per group (kind).

    Returns:
        (effect per item, prior strength per item).
    """
    o = np.asarray(observed, np.float64)
    e = np.maximum(np.asarray(expected, np.float64), 0.0)
    g = np.asarray(groups)
    effect = np.zeros(o.size)
    strength = np.zeros(o.size)
    for value in np.unique(g):
        m = g == value
        a = prior_strength(o[m], e[m])
        strength[m] = a
        effect[m] = np.log((o[m] + a) / (e[m] + a))
    return effect, strength


def leave_one_out(
    observed: FloatArray,
    expected: FloatArray,
    strength: FloatArray,
    item: npt.ArrayLike,
    own_o: FloatArray,
    own_e: FloatArray,
) -> FloatArray:
    """Per row, its item's effect without the row's own observed and expected counts."""
    i = np.asarray(item, np.int64)
    o = np.maximum(observed[i] - own_o, 0.0)
    e = np.maximum(expected[i] - own_e, 0.0)
    return np.asarray(np.log((o + strength[i]) / (e + strength[i])), dtype=np.float64)


def show_expectations(
    X: npt.NDArray[np.float32],
    shown: npt.ArrayLike,
    weight: npt.ArrayLike,
    client_ids: npt.ArrayLike,
    seed: int,
) -> FloatArray:
    """Out-of-fold probability that a counsellor shows each row's item to its client, from the pair features.

    A LightGBM classifier of "shown" over every eligible pair of the training period (sampled unshown rows count
    with their inverse sampling weight), cross-fitted in two folds of clients so no row is predicted by a model
    that saw it.

    Args:
        X: feature rows without the item-history columns.
        shown: whether the pair was shown.
        weight: row weights (1 for shown rows; inverse sampling rate for unshown ones).
        client_ids: client per row (the folds).
        seed: fold and LightGBM seed.

    Returns:
        Probability per row.
    """
    import lightgbm as lgb

    y = np.asarray(shown, dtype=np.int32)
    w = np.asarray(weight, dtype=np.float64)
    codes = np.unique(np.asarray(client_ids), return_inverse=True)[1].reshape(-1)
    fold = np.random.default_rng(seed).integers(0, 2, int(codes.max()) + 1 if codes.size else 0)[codes]
    out = np.full(y.size, float(np.average(y, weights=w)) if y.size else 0.0)
    params = {**SHOW_MODEL_PARAMS, "seed": seed}
    params["min_data_in_leaf"] = min(int(params["min_data_in_leaf"]), max(10, y.size // 200))
    for k in (0, 1):
        fit, pred = fold != k, fold == k
        if not pred.any() or len(np.unique(y[fit])) < 2:
            continue
        booster = lgb.train(params, lgb.Dataset(X[fit], label=y[fit], weight=w[fit]), SHOW_MODEL_ROUNDS)
        out[pred] = booster.predict(X[pred], num_threads=1)
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class ItemEffects:
    """Estimated effects of every catalogue item (0 for items without history).

    Attributes:
        opportunity_ids: catalogue order.
        show: counsellor-show effect (log-ratio).
        accept: acceptance effect beyond the show effect (log-ratio).
        show_coef: weight of the show effect in the acceptance utility (from the slate logit).
        outcome: outcome effect (log-ratio of outcome events).
        history: times each item was shown in the training period.
        strengths: prior strength per kind and signal (for the run's parameters).
    """

    opportunity_ids: tuple[str, ...]
    show: FloatArray
    accept: FloatArray
    show_coef: float
    outcome: FloatArray
    history: FloatArray
    strengths: Mapping[str, float]

    @property
    def accept_total(self) -> FloatArray:
        """The acceptance-utility effect stored in the featurizer: ``show_coef * show + accept``."""
        return np.asarray(self.show_coef * self.show + self.accept, dtype=np.float64)

    def table(self) -> dict[str, tuple[float, float]]:
        """Opportunity id -> (acceptance effect, outcome effect) for items with any history."""
        total = self.accept_total
        return {
            oid: (float(total[i]), float(self.outcome[i]))
            for i, oid in enumerate(self.opportunity_ids)
            if self.history[i] > 0 or total[i] != 0.0 or self.outcome[i] != 0.0
        }

    def summary(self) -> dict[str, float]:
        """Counts and spreads for the run's parameters and the model card."""
        has = self.history > 0
        total = self.accept_total
        out: dict[str, float] = {
            "items_with_history": float(has.sum()),
            "items_without_history": float((~has).sum()),
            "show_coef": self.show_coef,
            "accept_effect_sd": float(total[has].std()) if has.any() else 0.0,
            "outcome_effect_sd": float(self.outcome[has].std()) if has.any() else 0.0,
        }
        out.update({f"prior_strength.{k}": v for k, v in self.strengths.items()})
        return out


def per_item_counts(item: npt.ArrayLike, values: npt.ArrayLike, n_items: int) -> FloatArray:
    """Sum of ``values`` per item position."""
    counts = np.bincount(np.asarray(item, np.int64), weights=np.asarray(values, np.float64), minlength=n_items)
    return np.asarray(counts, dtype=np.float64)


def strengths_by_kind(strength: FloatArray, item_kind: npt.NDArray[np.int64], signal: str) -> dict[str, float]:
    """One prior strength per kind (for logging)."""
    return {
        f"{signal}.{KINDS[k]}": float(strength[item_kind == k][0]) for k in range(len(KINDS)) if np.any(item_kind == k)
    }


def kinds_of(kinds: Sequence[str]) -> npt.NDArray[np.int64]:
    """Kind index of each item."""
    return np.array([KINDS.index(k) for k in kinds], dtype=np.int64)
