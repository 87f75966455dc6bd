"""Off-policy evaluation of a ranking policy from logged slates: IPS, SNIPS and doubly robust, with intervals.

**Logged data.** One row per shown item of a logged slate (``models.exploration``): its query, its position
``j`` (1 first), the logging policy's *conditional* propensity ``mu_j`` (probability of this item at ``j`` given
the items above it), the target policy's conditional probability ``pi_j`` of the same item at ``j`` given the
same items above it, and the observed reward ``r_j`` (e.g. the graded outcome label).

**Estimand.** The value of the target policy ``V(pi) = E_q [ sum_j v_j r(q, a_j) ] / Z_q`` with position weights
``v_j`` (``1 / log2(j + 1)``, DCG) and a per-query normaliser ``Z_q`` (e.g. the ideal DCG, giving an NDCG-like
value; 1 for the raw expected DCG of outcomes).

**Weights.** Under the cascade assumption (the reward at position ``j`` depends on the items at positions
``1..j`` only, as when people read a list top-down), the exact importance weight of position ``j`` is the product
of the per-position ratios above and at it: ``w_j = prod_{l <= j} pi_l / mu_l`` (the "RIPS"/cascade weight of
Kiyohara et al., WSDM 2022; with exact conditional propensities it is unbiased). Weights are clipped at
``clip`` (bias for variance); SNIPS divides by the mean weight per position instead of by the number of queries.
Doubly robust adds a reward model, either with a model value of the target's own slate per query
(``target_dm``, the standard DR: ``target_dm_q + sum_j v_j w_j (r_j - rhat_j)``) or as the cascade DR of the same
paper:
``DR = sum_j v_j [w_{j-1} qhat_j + w_j (r_j - rhat_j)]`` where ``qhat_j`` is the reward model's expectation under
the target policy at position ``j`` given the logged items above, and ``rhat_j`` its prediction for the logged
item; it stays unbiased when either the weights or the reward model are right.

Support: a target that puts positive probability where the logging policy put none (e.g. a different item in the
fixed top places of ``models.exploration``) cannot be estimated without bias; such positions get weight 0 and
:attr:`Estimate.support` reports the share of queries whose whole slate has positive weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
DEFAULT_CLIP: Final = 20.0
BOOTSTRAP_SAMPLES: Final = 500


@dataclass(frozen=True)
class LoggedSlates:
    """Rows of logged slates, sorted by (query, position).

    Attributes:
        query: query number per row (0..n_queries-1).
        position: 1-based position per row.
        logging_propensity: ``mu_j``, the logging policy's conditional propensity (> 0).
        target_propensity: ``pi_j``, the target policy's conditional probability of the logged item at ``j``.
        reward: observed reward per row.
        reward_hat: reward model's prediction for the logged item (DR; zeros when unused).
        target_reward_hat: reward model's expectation under the target at ``j`` given the logged items above.
        normaliser: ``Z_q`` per query (default 1).
        target_dm: per query, the reward model's value of the target's own slate ``sum_j v_j rhat(pi_j, j)``
            (exact, or from one slate drawn from the target). When given, DR is
            ``target_dm_q + sum_j v_j w_j (r_j - rhat_j)``: its model part does not vanish where the logs do not
            support the target, so an unsupported query falls back to the model instead of to 0.
    """

    query: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    logging_propensity: FloatArray
    target_propensity: FloatArray
    reward: FloatArray
    reward_hat: FloatArray | None = None
    target_reward_hat: FloatArray | None = None
    normaliser: FloatArray | None = None
    target_dm: FloatArray | None = None

    def __post_init__(self) -> None:
        n = self.query.size
        for name in ("position", "logging_propensity", "target_propensity", "reward"):
            if getattr(self, name).size != n:
                raise ValueError(f"{name} has {getattr(self, name).size} rows, query has {n}")
        if n and np.any(self.logging_propensity <= 0):
            raise ValueError("logging_propensity must be > 0 for every logged row")
        if n and np.any(np.diff(self.query) < 0):
            raise ValueError("rows must be sorted by query (then position)")

    @property
    def n_queries(self) -> int:
        """Number of queries (the largest query number + 1)."""
        return int(self.query.max()) + 1 if self.query.size else 0


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate with a bootstrap interval over queries.

    Attributes:
        value: the point estimate.
        low: lower end of the 95 % percentile interval.
        high: upper end.
        support: share of queries whose every position has a positive weight.
        max_weight: the largest (clipped) weight used.
    """

    value: float
    low: float
    high: float
    support: float
    max_weight: float

    def as_dict(self) -> dict[str, float]:
        """Plain numbers (for reports)."""
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "support": self.support,
            "max_weight": self.max_weight,
        }


def dcg_weights(position: npt.ArrayLike) -> FloatArray:
    """``1 / log2(position + 1)`` (position 1 first)."""
    return np.asarray(1.0 / np.log2(np.asarray(position, dtype=np.float64) + 1.0), dtype=np.float64)


def cascade_weights(logs: LoggedSlates, clip: float = DEFAULT_CLIP) -> FloatArray:
    """Per-row ``w_j = prod_{l <= j} pi_l / mu_l`` within each query, clipped at ``clip``."""
    ratio = logs.target_propensity / logs.logging_propensity
    log_ratio = np.log(np.maximum(ratio, 1e-300))
    zero = ratio <= 0
    out = np.empty_like(ratio)
    starts = np.flatnonzero(np.r_[True, logs.query[1:] != logs.query[:-1]]) if ratio.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], ratio.size]
    for s, e in zip(starts, ends, strict=True):
        cum = np.exp(np.cumsum(log_ratio[s:e]))
        dead = np.cumsum(zero[s:e]) > 0
        out[s:e] = np.where(dead, 0.0, cum)
    return np.asarray(np.minimum(out, clip), dtype=np.float64)


def _previous(weights: FloatArray, query: npt.NDArray[np.int64]) -> FloatArray:
    """``w_{j-1}`` per row (1 at each query's first position)."""
    prev = np.ones_like(weights)
    if weights.size > 1:
        same = query[1:] == query[:-1]
        prev[1:] = np.where(same, weights[:-1], 1.0)
    return prev


def _per_query(values: FloatArray, query: npt.NDArray[np.int64], n: int) -> FloatArray:
    return np.asarray(np.bincount(query, weights=values, minlength=n), dtype=np.float64)


def _terms(logs: LoggedSlates, clip: float, kind: str) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-query numerator terms, per-query per-position weight sums and the row weights."""
    n = logs.n_queries
    w = cascade_weights(logs, clip)
    v = dcg_weights(logs.position)
    z = np.ones(n) if logs.normaliser is None else np.asarray(logs.normaliser, dtype=np.float64)
    if kind == "dr" and logs.target_dm is not None and logs.reward_hat is not None:
        row = v * w * (logs.reward - logs.reward_hat)
        return (np.asarray(logs.target_dm, dtype=np.float64) + _per_query(row, logs.query, n)) / z, w, v
    if kind == "dr":
        if logs.reward_hat is None or logs.target_reward_hat is None:
            raise ValueError("the doubly robust estimate needs reward_hat and target_reward_hat (or target_dm)")
        row = v * (_previous(w, logs.query) * logs.target_reward_hat + w * (logs.reward - logs.reward_hat))
    else:
        row = v * w * logs.reward
    return _per_query(row, logs.query, n) / z, w, v


def _snips_value(w: FloatArray, logs: LoggedSlates, z: FloatArray, queries: FloatArray) -> float:
    """SNIPS: each position's weighted rewards divided by that position's summed weight instead of its count.

    A position that only some slates have (short slates) keeps its share of the queries, so with all weights 1
    SNIPS equals IPS equals the logged mean.
    """
    v = dcg_weights(logs.position)
    total_queries = float(np.sum(queries))
    total = 0.0
    for j in np.unique(logs.position):
        at = logs.position == j
        q = logs.query[at]
        mult = queries[q]
        denom = float(np.sum(w[at] * mult))
        if denom > 0 and total_queries > 0:
            share = float(np.sum(mult)) / total_queries
            total += share * float(np.sum(mult * v[at] * w[at] * logs.reward[at] / z[q])) / denom
    return total


def estimate(
    logs: LoggedSlates,
    method: str = "snips",
    *,
    clip: float = DEFAULT_CLIP,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    versus_logging: bool = False,
) -> Estimate:
    """IPS, SNIPS or doubly robust (``"ips"``, ``"snips"``, ``"dr"``) estimate of the target's value.

    The interval resamples queries with replacement (``samples`` times) and takes the 2.5 and 97.5 percentiles.
    With ``versus_logging`` the estimate is of the *difference* target - logging policy (whose value on the same
    queries is the plain mean of the logged rewards), resampled in pairs, as a gate needs.
    """
    if method not in ("ips", "snips", "dr"):
        raise ValueError("method must be 'ips', 'snips' or 'dr'")
    n = logs.n_queries
    if n == 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, nan, nan)
    num, w, _ = _terms(logs, clip, "dr" if method == "dr" else "ips")
    z = np.ones(n) if logs.normaliser is None else np.asarray(logs.normaliser, dtype=np.float64)

    logged = _per_query(dcg_weights(logs.position) * logs.reward, logs.query, n) / z

    def value(mult: FloatArray) -> float:
        base = float(np.sum(mult * logged) / max(np.sum(mult), 1.0)) if versus_logging else 0.0
        if method == "snips":
            return _snips_value(w, logs, z, mult) - base
        return float(np.sum(mult * num) / max(np.sum(mult), 1.0)) - base

    point = value(np.ones(n))
    rng = np.random.default_rng(seed)
    draws = (np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64) for _ in range(samples))
    boots = np.array([value(mult) for mult in draws])
    supported = _per_query((w > 0).astype(np.float64), logs.query, n) == np.bincount(logs.query, minlength=n)
    return Estimate(
        value=point,
        low=float(np.percentile(boots, 2.5)),
        high=float(np.percentile(boots, 97.5)),
        support=float(np.mean(supported)),
        max_weight=float(w.max()) if w.size else 0.0,
    )


def estimate_all(
    logs: LoggedSlates, *, clip: float = DEFAULT_CLIP, samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, Estimate]:
    """IPS and SNIPS, plus DR when the logs carry reward-model predictions."""
    out = {m: estimate(logs, m, clip=clip, samples=samples) for m in ("ips", "snips")}
    if logs.reward_hat is not None and (logs.target_reward_hat is not None or logs.target_dm is not None):
        out["dr"] = estimate(logs, "dr", clip=clip, samples=samples)
    return out


def ips_training_weights(slate_propensity: npt.ArrayLike, clip: float = DEFAULT_CLIP) -> FloatArray:
    """Inverse-propensity weights for training rows: ``1 / p``, clipped at ``clip``, self-normalised to mean 1."""
    p = np.asarray(slate_propensity, dtype=np.float64)
    if p.size == 0:
        return p
    if np.any(p <= 0):
        raise ValueError("propensities must be > 0")
    w = np.minimum(1.0 / p, clip)
    return np.asarray(w / w.mean(), dtype=np.float64)
