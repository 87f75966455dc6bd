"""Cheap first-stage retrieval: a sparse skill and occupation score over clients x items, written once.

``2·essential coverage + optional coverage + goal-skill gain + goal match (ISCO-2) + prior-work match (ISCO-2)``,
minus 0.25 per CEFR step of the best-language gap. Serving keeps the best items of one client; candidate lists
the best clients of one item. Both call :func:`first_stage_scores` with a batch of one on one side.
"""

from __future__ import annotations

import numpy as np

from features.pairs.encoding import EncodedClients, EncodedItems, FloatArray, IntArray
from features.pairs.families import best_language_gap, client_overlap, language_gaps, prefix_match, safe_div

_DEPTH_2 = 1  # position of ISCO depth 2 in the prefix tables


def first_stage_scores(cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> FloatArray:
    """``(len(rows), len(idx))`` first-stage scores (higher = more promising)."""
    ess, opt = it.essential[idx], it.optional[idx]
    ess_n = np.diff(ess.indptr).astype(np.float32)[None, :]
    opt_n = np.diff(opt.indptr).astype(np.float32)[None, :]
    weighted = client_overlap(cb, "weighted", rows, ess)
    score = 2.0 * safe_div(weighted, ess_n) + safe_div(client_overlap(cb, "weighted", rows, opt), opt_n)
    gain = client_overlap(cb, "goal", rows, it.gained[idx])
    score += safe_div(gain, np.maximum(cb.goal_missing_n[rows], 1.0)[:, None])
    codes = it.isco[idx, _DEPTH_2]
    score += prefix_match(cb.goal[_DEPTH_2], None, rows, codes)
    stacked, weights = cb.prior[_DEPTH_2]
    score += prefix_match(stacked, weights, rows, codes)
    score -= 0.25 * best_language_gap(language_gaps(cb, rows, it, idx), it, idx)
    return np.asarray(score, dtype=np.float32)


def top_items(cb: EncodedClients, row: int, it: EncodedItems, idx: IntArray, k: int) -> IntArray:
    """The ``k`` best of catalogue positions ``idx`` for client ``row``, best first (ties keep ``idx`` order)."""
    if idx.size == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    score = first_stage_scores(cb, np.array([row], dtype=np.int64), it, idx)[0]
    return np.asarray(idx[np.argsort(-score, kind="stable")[:k]], dtype=np.int64)
