"""The feature families, each written once over clients x items arrays that broadcast.

Every family reads client columns as ``(n, 1)`` and item columns as ``(1, m)`` and writes ``(n, m)`` blocks, so
one client against a catalogue (serving, training) and many clients against one item (candidate lists) run the
same code: a single client is a batch of one, a single item a list of one. Rows of the result are client-major.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.eligibility import S2_OFFSET_STEPS
from features.pairs.encoding import KEY_SPACE, EncodedClients, EncodedItems, FloatArray, IntArray
from features.pairs.names import COL, DATE_KEY, FEATURE_NAMES, ISCO_DEPTHS, LANGS, NO_INTAKE_DAYS, RECOGNITION_ORDER
from features.records import KINDS, ROUTES
from features.taxonomy import Taxonomy

_INT_MAX = np.iinfo(np.int64).max


class _Block:
    """Writes ``(n, m)`` (or broadcastable) values into the feature columns of an ``(n * m, F)`` matrix."""

    def __init__(self, n: int, m: int) -> None:
        self.out = np.zeros((n * m, len(FEATURE_NAMES)), dtype=np.float32)
        self._view = self.out.reshape(n, m, len(FEATURE_NAMES))  # client-major rows, assignment broadcasts

    def __setitem__(self, name: str, value: Any) -> None:
        self._view[:, :, COL[name]] = value


def safe_div(num: Any, den: Any) -> FloatArray:
    """``num / den`` in float32, 0 where ``den`` is 0."""
    num = np.asarray(num, dtype=np.float32)
    den = np.asarray(den, dtype=np.float32)
    return np.asarray(np.where(den > 0, num / np.maximum(den, 1e-12), 0.0).astype(np.float32))


def overlap(clients: sp.csr_matrix, items: sp.csr_matrix) -> FloatArray:
    """``(n, m)`` weighted overlaps of sparse client rows and sparse item rows (float32, summed in column order).

    One client (or one item) takes a sparse-times-dense product; many of both a sparse product.
    """
    n, m = clients.shape[0], items.shape[0]
    if n == 1:
        dense = np.zeros(clients.shape[1], dtype=np.float32)
        dense[clients.indices] = clients.data
        return np.asarray(items @ dense, dtype=np.float32).reshape(1, m)
    if m == 1:
        dense = np.zeros(items.shape[1], dtype=np.float32)
        dense[items.indices] = items.data
        return np.asarray(clients @ dense, dtype=np.float32).reshape(n, 1)
    return np.asarray((clients @ items.T).toarray(), dtype=np.float32)


def client_overlap(cb: EncodedClients, part: str, rows: IntArray, items: sp.csr_matrix) -> FloatArray:
    """``(n, m)`` overlaps of clients ``rows`` (skills ``weighted``/``present``, or ``goal`` gaps) with item rows.

    One client takes its dense skill vector straight from the raw parts (no sparse matrix is built per request).
    """
    if rows.size == 1:
        dense = cb.skill_row(part, int(rows[0]))
        return np.asarray(items @ dense, dtype=np.float32).reshape(1, items.shape[0])
    matrix = cb.skill_matrix(part)
    whole = rows.size == len(cb) and bool(np.all(rows == np.arange(len(cb))))
    return overlap(matrix if whole else matrix[rows], items)


def prefix_match(stacked: IntArray, weights: FloatArray | None, rows: IntArray, codes: IntArray) -> FloatArray:
    """``(n, m)`` weight of each item's ISCO prefix in each client's table (0 where absent or unknown)."""
    if stacked.size == 0:
        return np.zeros((rows.size, codes.size), dtype=np.float32)
    query = rows[:, None] * KEY_SPACE + codes[None, :]
    pos = np.clip(np.searchsorted(stacked, query), 0, stacked.size - 1)
    hit = (stacked[pos] == query) & (codes[None, :] >= 0)
    values = np.float32(1.0) if weights is None else weights[pos]
    return np.asarray(np.where(hit, values, 0.0).astype(np.float32))


def language_gaps(cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> IntArray:
    """``(n, m, 3)`` shortfall in CEFR sub-levels per language (S2 support offsets part of it); 0 where not required."""
    need = it.min_lang[idx][None, :, :]
    offset = np.where(it.s2[idx], S2_OFFSET_STEPS, 0)[None, :, None]
    gap = np.clip(need - cb.lang[rows][:, None, :] - offset, 0, None)
    return np.asarray(np.where(need > 0, gap, 0), dtype=np.int64)


def best_language_gap(gaps: IntArray, it: EncodedItems, idx: IntArray) -> FloatArray:
    """``(n, m)``: the smallest gap among the required languages (any one suffices), 0 when none is required."""
    need = it.min_lang[idx][None, :, :]
    best = np.where(need > 0, gaps, _INT_MAX).min(axis=-1)
    return np.asarray(np.where((need > 0).any(axis=-1), best, 0).astype(np.float32))


def days_to_start(it: EncodedItems, idx: IntArray, ref: date) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Days from ``ref`` to each item's next intake (0 for continuous admission) and a no-intake-left flag."""
    r = ref.toordinal()
    continuous = it.continuous[idx]
    if it.intake_keys.size:
        # Keys sort by (item, date): the first key at or after (item, ref) is the item's next intake if it
        # still belongs to the item's own run.
        pos = np.searchsorted(it.intake_keys, idx * DATE_KEY + r)
        has_next = pos < it.intake_end[idx]
        next_ord = it.intake_keys[np.clip(pos, 0, it.intake_keys.size - 1)] - idx * DATE_KEY
        days = np.where(has_next, next_ord - r, NO_INTAKE_DAYS)
    else:
        has_next = np.zeros(idx.size, dtype=bool)
        days = np.full(idx.size, NO_INTAKE_DAYS)
    days = np.where(continuous, 0.0, days).astype(np.float32)
    return days, ~has_next & ~continuous


def distances(tax: Taxonomy, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> FloatArray:
    """``(n, m)`` km from each client's municipality to each item's (per-municipality rows cached on the items)."""
    table = it.municipality_distances(tax, cb.municipalities)
    return np.asarray(table[cb.mun[rows]][:, it.mun[idx]], dtype=np.float32)


def _skills(b: _Block, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> None:
    ess, opt = it.essential[idx], it.optional[idx]
    ess_n = np.diff(ess.indptr).astype(np.float32)[None, :]
    opt_n = np.diff(opt.indptr).astype(np.float32)[None, :]
    ess_have = client_overlap(cb, "present", rows, ess)
    b["ess_cov"] = safe_div(client_overlap(cb, "weighted", rows, ess), ess_n)
    b["ess_cov_any"] = safe_div(ess_have, ess_n)
    b["ess_missing"] = ess_n - ess_have
    b["ess_n"] = ess_n
    b["opt_cov"] = safe_div(client_overlap(cb, "weighted", rows, opt), opt_n)
    b["opt_cov_any"] = safe_div(client_overlap(cb, "present", rows, opt), opt_n)
    b["opt_n"] = opt_n
    gain = client_overlap(cb, "goal", rows, it.gained[idx])
    b["goal_skill_gain"] = safe_div(gain, np.maximum(cb.goal_missing_n[rows], 1.0)[:, None])


def _occupation(b: _Block, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> None:
    isco = it.isco[idx]
    for pos, depth in enumerate(ISCO_DEPTHS):
        stacked, weights = cb.prior[pos]
        b[f"occ_prior_isco{depth}"] = prefix_match(stacked, weights, rows, isco[:, pos])
        b[f"occ_goal_isco{depth}"] = prefix_match(cb.goal[pos], None, rows, isco[:, pos])
    b["has_occupation"] = isco[None, :, 0] >= 0


def _language(b: _Block, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> None:
    gaps = language_gaps(cb, rows, it, idx)
    for j, lang in enumerate(LANGS):
        b[f"lang_gap_{lang}"] = gaps[:, :, j]
    b["lang_gap_best"] = best_language_gap(gaps, it, idx)
    need = it.min_lang[idx]
    fi = cb.lang[rows][:, 0][:, None]
    b["lang_required"] = np.asarray((need > 0).any(axis=1))[None, :]
    b["lang_margin_fi"] = np.where(need[None, :, 0] > 0, fi - need[None, :, 0], 0)
    reached_fi = it.lang_reached[idx, 0][None, :]
    b["lang_gain_fi"] = np.clip(reached_fi - fi, 0, None) * (reached_fi >= 0)
    b["client_fi_level"] = fi
    b["lang_fi_uncertain"] = cb.fi_uncertain[rows][:, None]
    b["s2_support"] = it.s2[idx][None, :]
    literacy = cb.literacy[rows][:, None]
    b["lit_gap"] = np.clip(it.min_lit[idx][None, :] - literacy, 0, None)
    lit_reached = it.lit_reached[idx][None, :]
    b["lit_gain"] = np.clip(lit_reached - literacy, 0, None) * (lit_reached >= 0)
    b["digital_gap"] = np.clip(it.min_digital[idx][None, :] - cb.digital[rows][:, None], 0, None)


def _education(b: _Block, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> None:
    isced = cb.isced[rows][:, None]
    min_isced = it.min_isced[idx][None, :]
    b["edu_met"] = isced >= min_isced
    b["edu_gap"] = np.clip(min_isced - isced, 0, None)
    reached = it.isced_reached[idx][None, :]
    b["isced_gain"] = np.clip(reached - isced, 0, None) * (reached >= 0)
    needs = it.needs_recognition[idx][None, :]
    recognition = cb.recognition[rows][:, None]
    b["recog_required"] = needs
    b["recog_met"] = ~needs | (recognition >= RECOGNITION_ORDER["recognised"])
    b["client_recognition"] = recognition / 3.0


def _place_time(
    b: _Block, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray, ref: date, tax: Taxonomy
) -> None:
    dist = distances(tax, cb, rows, it, idx)
    b["dist_km"] = dist
    b["dist_ratio"] = dist / np.maximum(cb.max_travel_km[rows], 1.0)[:, None]
    days, none_left = days_to_start(it, idx, ref)
    b["days_to_start"] = days[None, :]
    b["no_intake"] = none_left[None, :]
    b["continuous"] = it.continuous[idx][None, :]
    b["duration_weeks"] = it.duration[idx][None, :]
    b["seats_left"] = it.seats_left[idx][None, :]
    b["fill_ratio"] = it.fill_ratio[idx][None, :]


def _support_kind(b: _Block, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray) -> None:
    support = cb.support[rows][:, None]
    item_support = it.support[idx][None, :]
    b["support_need"] = support
    b["item_support"] = item_support
    b["support_x"] = support * item_support
    b["support_gap"] = np.clip(support - item_support, 0, None)
    kind = it.kind[idx][None, :]
    for k, name in enumerate(KINDS):
        b[f"kind_{name}"] = kind == k
    route = it.route[idx][None, :]
    for r, route_name in enumerate(ROUTES):
        b[f"route_{route_name}"] = route == r
    is_training = kind == KINDS.index("training")
    path = cb.preferred_path[rows][:, None]
    work, education = path == "work", path == "education"
    b["pref_work"] = work
    b["pref_education"] = education
    b["path_match"] = np.where(work, ~is_training, np.where(education, is_training, 0.5)).astype(np.float32)
    b["pay_subsidy"] = it.pay_subsidy[idx][None, :]
    b["te_decision"] = it.te_decision[idx][None, :]
    b["hist_accept_rate"] = it.hist_rate[idx][None, :]
    b["item_history_n"] = it.history_n[idx][None, :]
    b["item_accept_effect"] = it.accept_effect[idx][None, :]
    b["item_outcome_effect"] = it.outcome_effect[idx][None, :]
    b["age"] = cb.age[rows][:, None]
    b["client_digital"] = cb.digital[rows][:, None]
    b["client_literacy"] = cb.literacy[rows][:, None]
    b["client_isced"] = cb.isced[rows][:, None]


def pair_features(
    tax: Taxonomy, cb: EncodedClients, rows: IntArray, it: EncodedItems, idx: IntArray, ref: date
) -> FloatArray:
    """Feature rows of clients ``rows`` x items ``idx``: ``(len(rows) * len(idx), F)``, client-major, finite."""
    b = _Block(int(rows.size), int(idx.size))
    if b.out.shape[0] == 0:
        return b.out
    _skills(b, cb, rows, it, idx)
    _occupation(b, cb, rows, it, idx)
    _language(b, cb, rows, it, idx)
    _education(b, cb, rows, it, idx)
    _place_time(b, cb, rows, it, idx, ref, tax)
    _support_kind(b, cb, rows, it, idx)
    np.nan_to_num(b.out, copy=False, nan=0.0, posinf=1e6, neginf=-1e6)
    return b.out
