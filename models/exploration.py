"""Serving policies that turn scores into a shown slate, with the exact propensity of every shown item.

Two policies share one interface (:class:`SlatePolicy`):

* :class:`Deterministic` shows the ``k`` best by score (ties by input order); each propensity is 1.
* :class:`PlackettLuce` keeps the top :data:`FIXED_TOP` places deterministic and fills the places below by
  Plackett–Luce sampling without replacement from the remaining candidates, with weights
  ``exp((s_i - max s) / temperature)``.

**What the logged propensity is.** For a shown item at position ``j`` it is the *conditional* probability that
the policy put this item at position ``j`` given the items it had already placed at positions ``1..j-1``:
``p_j = w_i / sum_{l not yet placed} w_l`` for sampled places and ``1`` for the fixed top. It is exact (computed
from the same floating-point weights that drew the item). The probability of the whole slate is the product of
its items' propensities (:func:`slate_probability`). The *marginal* probability of an item at a position would
need a sum over every prefix, which is not computed: estimators in ``training.ope`` use the conditional
propensities (position-wise, as in the pseudo-inverse/cascade estimators) or the slate probability.

Each call draws from its own seeded generator, so a slate is reproducible from its seed (the service derives
the seed from the impression id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

FIXED_TOP: Final = 3
"""Places at the top that exploration never changes."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Slate:
    """A served slate: which candidates were shown, in which order, and how likely each placement was.

    Attributes:
        order: positions into the scored candidates, first shown first.
        propensities: per shown item, the probability of its placement given the items before it.
        explored: True when any place was sampled (not the deterministic order).
        policy: the policy's name as logged with impressions.
    """

    order: IntArray
    propensities: FloatArray
    explored: bool
    policy: str


class SlatePolicy(Protocol):
    """Chooses ``k`` of scored candidates and reports each choice's propensity."""

    @property
    def name(self) -> str:
        """The policy's name as logged with impressions."""
        ...

    def select(self, scores: npt.ArrayLike, k: int, seed: int | None = None) -> Slate:
        """The slate of at most ``k`` candidates of ``scores`` (``seed`` makes a sampled slate reproducible)."""
        ...

    def conditional_propensities(self, scores: npt.ArrayLike, order: npt.ArrayLike) -> FloatArray:
        """Each position's probability of ``order``'s item given the items above it (0 where impossible)."""
        ...


def _best_first(scores: FloatArray) -> IntArray:
    return np.argsort(-scores, kind="stable").astype(np.int64)


@dataclass(frozen=True)
class Deterministic:
    """The ``k`` best by score, best first (the default serving policy)."""

    @property
    def name(self) -> str:
        """``deterministic``."""
        return "deterministic"

    def select(self, scores: npt.ArrayLike, k: int, seed: int | None = None) -> Slate:
        """The top ``k``; every propensity is 1."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        order = _best_first(s)[: max(k, 0)]
        return Slate(order, np.ones(order.size), explored=False, policy=self.name)

    def conditional_propensities(self, scores: npt.ArrayLike, order: npt.ArrayLike) -> FloatArray:
        """1 where ``order`` follows the score order (ties by input order), 0 from the first departure on."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        shown = np.asarray(order, dtype=np.int64).reshape(-1)
        ranked = _best_first(s)[: shown.size]
        same = np.cumprod(shown == ranked[: shown.size]) if shown.size <= ranked.size else np.zeros(shown.size)
        return np.asarray(same, dtype=np.float64)


@dataclass(frozen=True)
class PlackettLuce:
    """Fixed top places, then Plackett–Luce sampling without replacement with a temperature.

    Attributes:
        temperature: divides score differences; small values approach the deterministic order.
        fixed_top: places kept in score order.
    """

    temperature: float
    fixed_top: int = FIXED_TOP

    def __post_init__(self) -> None:
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError("temperature must be a positive finite number")
        if self.fixed_top < 0:
            raise ValueError("fixed_top must be >= 0")

    @property
    def name(self) -> str:
        """``plackett-luce(t=<temperature>,top=<fixed_top>)``, as logged with impressions."""
        return f"plackett-luce(t={self.temperature:g},top={self.fixed_top})"

    def weights(self, scores: npt.ArrayLike) -> FloatArray:
        """Plackett–Luce weights ``exp((s - max s) / temperature)`` (positive, the largest is 1)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if s.size == 0:
            return s
        return np.asarray(np.exp((s - s.max()) / self.temperature), dtype=np.float64)

    def select(self, scores: npt.ArrayLike, k: int, seed: int | None = None) -> Slate:
        """Sample a slate of ``min(k, n)`` candidates; see the module docstring for the propensities."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        n_show = min(max(k, 0), s.size)
        ranked = _best_first(s)
        n_fixed = min(self.fixed_top, n_show)
        order = list(ranked[:n_fixed])
        props = [1.0] * n_fixed
        remaining = ranked[n_fixed:]
        explored = False
        if n_show > n_fixed:
            rng = np.random.default_rng(seed)
            w = self.weights(s[remaining])
            alive = np.ones(remaining.size, dtype=bool)
            for _ in range(n_show - n_fixed):
                p = np.where(alive, w, 0.0)
                p = p / p.sum()
                pick = int(rng.choice(remaining.size, p=p))
                order.append(int(remaining[pick]))
                props.append(float(p[pick]))
                alive[pick] = False
            explored = order[n_fixed:] != [int(i) for i in ranked[n_fixed:n_show]]
        return Slate(np.asarray(order, dtype=np.int64), np.asarray(props), explored=explored, policy=self.name)

    def conditional_propensities(self, scores: npt.ArrayLike, order: npt.ArrayLike) -> FloatArray:
        """Propensities of a given slate ``order`` over ``scores`` under this policy (0 where impossible).

        The fixed top must equal the score order there (else its propensity is 0); every later place gets
        ``w_i / sum of the weights not yet placed``. Used to evaluate a logged slate under this policy.
        """
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        shown = np.asarray(order, dtype=np.int64).reshape(-1)
        ranked = _best_first(s)
        n_fixed = min(self.fixed_top, shown.size)
        out = np.zeros(shown.size)
        out[:n_fixed] = (shown[:n_fixed] == ranked[:n_fixed]).astype(np.float64)
        alive = np.ones(s.size, dtype=bool)
        alive[ranked[:n_fixed]] = False
        w = self.weights(s)
        for j in range(n_fixed, shown.size):
            i = int(shown[j])
            if not alive[i]:
                return out
            out[j] = w[i] / w[alive].sum()
            alive[i] = False
        return out


def slate_probability(propensities: npt.ArrayLike) -> float:
    """Probability of the whole slate: the product of its items' conditional propensities."""
    return float(np.prod(np.asarray(propensities, dtype=np.float64)))


def policy_from_setting(value: str | float | None) -> SlatePolicy:
    """The policy a ``POLKU_EXPLORATION`` value names: ``off`` (or empty) or a temperature > 0.

    Raises:
        ValueError: anything else (the message names the setting).
    """
    if value is None:
        return Deterministic()
    text = str(value).strip().lower()
    if text in ("", "off", "none", "0"):
        return Deterministic()
    try:
        temperature = float(text)
    except ValueError:
        raise ValueError("POLKU_EXPLORATION must be 'off' or a temperature > 0, e.g. 0.5") from None
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError("POLKU_EXPLORATION must be 'off' or a temperature > 0, e.g. 0.5")
    return PlackettLuce(temperature)
