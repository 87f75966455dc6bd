"""Replay a logged slate under another model and policy: the scored pool and the target's propensities.

Off-policy evaluation (``training.ope``) and the closed-loop simulation need, for a slate some policy showed,
the probability that *another* model, served with a given policy (``models.exploration``), would have placed
the same items at the same positions. This uses the serving path of :class:`~models.package.PolkuModel` (first
stage, features, ranker) and nothing private.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt

from features.pairs import EncodedClients, EncodedItems
from models.exploration import SlatePolicy
from models.package import PolkuModel


def scored_pool(
    model: PolkuModel,
    enc_client: EncodedClients,
    enc_items: EncodedItems,
    candidates: npt.ArrayLike,
    reference_date: date | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The catalogue positions the model would score for these candidates (after its first stage), and scores."""
    idx = np.asarray(candidates, dtype=np.int64).reshape(-1)
    if model.first_stage_k > 0 and idx.size > model.first_stage_k:
        idx = model.first_stage(enc_client, enc_items, idx, model.first_stage_k)
    if idx.size == 0:
        return idx, np.zeros(0, dtype=np.float64)
    return idx, model.score(enc_client, enc_items, idx, reference_date)


def target_propensities(
    pool: npt.NDArray[np.int64], scores: npt.NDArray[np.float64], shown: npt.ArrayLike, policy: SlatePolicy
) -> npt.NDArray[np.float64]:
    """Conditional propensities of the ``shown`` catalogue positions (in order) under ``policy`` on ``scores``.

    An item outside the pool (the target would never score it) makes its position and all below it 0.
    """
    shown_idx = np.asarray(shown, dtype=np.int64).reshape(-1)
    where = {int(p): n for n, p in enumerate(pool)}
    local = [where.get(int(p), -1) for p in shown_idx]
    out = np.zeros(shown_idx.size, dtype=np.float64)
    first_missing = next((j for j, x in enumerate(local) if x < 0), len(local))
    if first_missing:
        out[:first_missing] = policy.conditional_propensities(scores, local[:first_missing])
    return out
