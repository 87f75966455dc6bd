"""Cheap first-stage retrieval: a sparse skill and occupation score over clients x items, written once.

``2·essential coverage + optional coverage + goal-skill gain + goal match (ISCO-2) + prior-work match (ISCO-2)``,
minus 0.25 per CEFR step of the best-language gap. Serving keeps the best items of one client; candidate lists
the best clients of one item. Both call :func:`first_stage_scores` with a batch of one on one side.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from features.pairs.encoding import EncodedClients, EncodedItems, FloatArray, IntArray
from features.pairs.families import best_language_gap, client_overlap, language_gaps, prefix_match, safe_div

_DEPTH_2 = 1  # position of ISCO depth 2 in the prefix tables
_WHOLE_CATALOGUE_SHARE = 8
"""One client against at least 1/8 of the catalogue is scored against all of it (see :func:`first_stage_scores`)."""


def rows_dot(items: sp.csr_matrix, idx: IntArray, dense: FloatArray) -> FloatArray:
    """``items[idx] @ dense`` without building the sliced matrix (float32; long rows may round differently)."""
    starts = items.indptr[idx]
    lengths = items.indptr[idx + 1] - starts
    offsets = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    out = np.zeros(idx.size, dtype=np.float32)
    if total:
        pos = np.arange(total) + np.repeat(starts - offsets, lengths)
        values = (items.data[pos] * dense[items.indices[pos]]).astype(np.float32)
        filled = lengths > 0
        out[filled] = np.add.reduceat(values, offsets[filled])
    return out


def _row_lengths(items: sp.csr_matrix, idx: IntArray) -> FloatArray:
    """``(1, len(idx))`` stored entries of each item row (skills listed)."""
    return np.asarray((items.indptr[idx + 1] - items.indptr[idx]).astype(np.float32)[None, :])


def first_stage_scores(cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> FloatArray:
    """``(len(rows), len(idx))`` first-stage scores (higher = more promising)."""
    n_items = it.essential.shape[0]
    if rows.size == 1 and idx.size * _WHOLE_CATALOGUE_SHARE >= n_items:
        # One client against much of the catalogue: products with the whole item matrices, then a take, cost
        # less than slicing three sparse matrices (each row's sum is the same, so are the scores).
        def overlap_with(part: str, items: sp.csr_matrix) -> FloatArray:
            return client_overlap(cb, part, rows, items)[:, idx]

    elif rows.size == 1:
        # One client against a few items (a path planner's states): gather the items' rows, no sparse slicing.
        def overlap_with(part: str, items: sp.csr_matrix) -> FloatArray:
            return rows_dot(items, idx, cb.skill_row(part, int(rows[0])))[None, :]

    else:

        def overlap_with(part: str, items: sp.csr_matrix) -> FloatArray:
            return client_overlap(cb, part, rows, items[idx])

    ess_n = _row_lengths(it.essential, idx)
    opt_n = _row_lengths(it.optional, idx)
    weighted = overlap_with("weighted", it.essential)
    score = 2.0 * safe_div(weighted, ess_n) + safe_div(overlap_with("weighted", it.optional), opt_n)
    gain = overlap_with("goal", it.gained)
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
