"""A conditional logit of acceptance over recorded slates: which shown item, if any, a client took up.

Each recorded slate (the items one client was shown for one kind) had at most one acceptance, against a
"none of these" option per kind. The utility of a shown item is its acceptance-model score, plus a position term
(position bias) and the item's counsellor-show effect; :func:`fit_slate_logit` finds the weights by maximum
likelihood. ``models.outcome`` uses the scale to turn scores into ``p_accept``, and ``training.item_effects``
uses the slate probabilities as the expected acceptances of each item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from features.records import KINDS

_RIDGE = 1e-3  # keeps the weights finite when a kind has no slates
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SlateLogit:
    """A conditional logit of acceptance over recorded slates with a per-kind "none" option.

    ``P(accept i | slate) = exp(s_i) / (exp(none[kind]) + sum_j exp(s_j))`` with
    ``s = scale * f + position_coef * position + show_coef * show_effect``.

    Attributes:
        scale: weight of the acceptance model's score.
        position_coef: weight per slate position (position bias; 0 = first).
        show_coef: weight of the item's counsellor-show effect (how much more often counsellors showed it than
            its features explain).
        none: log-weight of "none of these" per kind, in the order of :data:`features.records.KINDS`.
    """

    scale: float
    position_coef: float
    show_coef: float
    none: tuple[float, ...]

    def utilities(
        self, f: npt.ArrayLike, position: npt.ArrayLike, show_effect: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Slate utilities ``s`` of rows."""
        return np.asarray(
            self.scale * np.asarray(f, np.float64)
            + self.position_coef * np.asarray(position, np.float64)
            + self.show_coef * np.asarray(show_effect, np.float64),
            dtype=np.float64,
        )

    def probabilities(
        self, utilities: npt.ArrayLike, slate: npt.ArrayLike, kind: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Acceptance probability of each row within its slate (rows of one slate share ``slate``)."""
        s = np.asarray(utilities, np.float64)
        codes = np.unique(np.asarray(slate), return_inverse=True)[1].reshape(-1)
        n_slates = int(codes.max()) + 1 if codes.size else 0
        kinds = np.asarray(kind, np.int64)
        slate_kind = np.zeros(n_slates, dtype=np.int64)
        slate_kind[codes] = kinds
        top = np.full(n_slates, -np.inf)
        np.maximum.at(top, codes, s)
        none = np.asarray(self.none, np.float64)[slate_kind]
        top = np.maximum(top, none)
        e = np.exp(s - top[codes])
        den = np.bincount(codes, weights=e, minlength=n_slates) + np.exp(none - top)
        return np.asarray(e / den[codes], dtype=np.float64)


def fit_slate_logit(
    f: npt.ArrayLike,
    position: npt.ArrayLike,
    show_effect: npt.ArrayLike,
    slate: npt.ArrayLike,
    kind: npt.ArrayLike,
    accepted: npt.ArrayLike,
) -> SlateLogit:
    """Maximum-likelihood :class:`SlateLogit` over recorded slates (at most one acceptance per slate).

    Args:
        f: acceptance-model score per shown row.
        position: slate position per row (0 = first).
        show_effect: the item's counsellor-show effect per row (0 when not estimated).
        slate: slate id per row.
        kind: kind index per row (constant within a slate).
        accepted: whether the row was accepted.

    Returns:
        The fitted model (a small ridge keeps it finite when a kind has no slates).
    """
    X = np.column_stack([np.asarray(a, np.float64) for a in (f, position, show_effect)])
    y = np.asarray(accepted, np.float64)
    codes = np.unique(np.asarray(slate), return_inverse=True)[1].reshape(-1)
    n_slates = int(codes.max()) + 1 if codes.size else 0
    slate_kind = np.zeros(n_slates, dtype=np.int64)
    slate_kind[codes] = np.asarray(kind, np.int64)
    took = np.minimum(np.bincount(codes, weights=y, minlength=n_slates), 1.0)
    n_k = len(KINDS)

    def nll(theta: FloatArray) -> tuple[float, FloatArray]:
        w, none = theta[:3], theta[3:]
        s = X @ w
        nz = none[slate_kind]
        top = np.maximum(np.full(n_slates, -np.inf), nz)
        np.maximum.at(top, codes, s)
        e = np.exp(s - top[codes])
        e_none = np.exp(nz - top)
        den = np.bincount(codes, weights=e, minlength=n_slates) + e_none
        ll = float(y @ s + (1.0 - took) @ nz - np.sum(np.log(den) + top))
        p = e / den[codes]
        p_none = e_none / den
        grad_w = X.T @ (y - p)
        grad_none = np.bincount(slate_kind, weights=(1.0 - took) - p_none, minlength=n_k)
        grad = -np.r_[grad_w, grad_none] + _RIDGE * theta
        return -ll + 0.5 * _RIDGE * float(theta @ theta), grad

    start = np.r_[1.0, 0.0, 0.0, np.full(n_k, 2.0)]
    if n_slates == 0:
        return SlateLogit(1.0, 0.0, 0.0, tuple(float(v) for v in start[3:]))
    res = minimize(nll, start, jac=True, method="L-BFGS-B")
    theta = res.x
    return SlateLogit(float(theta[0]), float(theta[1]), float(theta[2]), tuple(float(v) for v in theta[3:]))
