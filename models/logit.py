"""Penalised logistic regression with the penalty chosen by client-grouped cross-validation.

The design matrix holds its own intercept columns; only the columns marked ``penalised`` are shrunk (with a tiny
ridge on all, so that a kind or route without rows keeps finite coefficients). The penalty is the one of
:data:`PENALTY_GRID` with the lowest cross-validated log-loss, folds drawn by client (a client's rows are not
independent).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import expit

PENALTY_GRID: Final[tuple[float, ...]] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
"""L2 penalties on the penalised coefficients tried by cross-validation (absolute, on the summed log-likelihood)."""
CV_FOLDS: Final = 4
_RIDGE: Final = 1e-3
FloatArray = npt.NDArray[np.float64]


def fit_logistic(
    Z: FloatArray, y: FloatArray, penalised: FloatArray, lam: float, offset: FloatArray | None = None
) -> FloatArray:
    """Coefficients of a logistic regression without a free intercept (``Z`` holds the intercept columns)."""
    off = np.zeros(len(y)) if offset is None else offset
    pen = lam * penalised + _RIDGE

    def nll(w: FloatArray) -> tuple[float, FloatArray]:
        eta = Z @ w + off
        loss = float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * np.sum(pen * w * w))
        return loss, Z.T @ (expit(eta) - y) + pen * w

    return np.asarray(minimize(nll, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B").x, dtype=np.float64)


def log_loss(Z: FloatArray, y: FloatArray, w: FloatArray, offset: FloatArray) -> float:
    """Mean log-loss of coefficients ``w`` on rows ``Z`` with labels ``y`` (0 for no rows)."""
    eta = Z @ w + offset
    return float(np.mean(np.logaddexp(0.0, eta) - y * eta)) if len(y) else 0.0


def choose_penalty(
    Z: FloatArray, y: FloatArray, penalised: FloatArray, offset: FloatArray, groups: npt.ArrayLike, seed: int
) -> tuple[float, dict[float, float]]:
    """The route penalty with the lowest client-grouped cross-validated log-loss (largest on ties)."""
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    n_groups = int(codes.max()) + 1 if codes.size else 0
    if n_groups < CV_FOLDS or len(y) < 20 * CV_FOLDS:
        return PENALTY_GRID[-1], {}
    fold_of = np.random.default_rng(seed).integers(0, CV_FOLDS, n_groups)[codes]
    losses: dict[float, float] = {}
    for lam in PENALTY_GRID:
        total = 0.0
        for k in range(CV_FOLDS):
            tr, te = fold_of != k, fold_of == k
            w = fit_logistic(Z[tr], y[tr], penalised, lam * tr.mean(), offset[tr])
            total += log_loss(Z[te], y[te], w, offset[te]) * te.sum()
        losses[lam] = total / len(y)
    best = min(losses.values())
    return max(lam for lam, loss in losses.items() if loss <= best + 1e-12), losses
