"""Ranking, catalogue and fairness metrics as pure numpy functions over flat (row = candidate) arrays.

Every ranking metric takes the same three aligned arrays, one row per (query, candidate):
``relevance`` (graded 0..4), ``scores`` (higher = ranked earlier) and ``query_ids`` (any hashable dtype);
rows of one query need not be contiguous. :class:`RankedLists` sorts once and is shared by all metrics.

Conventions (chosen, documented and tested):

* NDCG uses exponential gains ``2**rel - 1`` and the ``1 / log2(rank + 2)`` discount. ``sklearn.metrics.ndcg_score``
  uses linear gains, so it equals ours when it is given ``2**rel - 1`` as ``y_true``. Ties in scores are averaged as
  sklearn does (``ignore_ties=False``): a tied block gets the mean gain of its members at each of its positions.
* Queries whose ideal DCG is 0 (no relevant candidate) have no defined NDCG; they are left out of the mean
  (sklearn counts them as 0 — pass ``empty_as_zero=True`` to reproduce that).
* MAP and recall use binary relevance ``rel >= relevant_from`` (default 3) and break score ties by row order.
  Queries without relevant rows are left out of the mean.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

# Column order of every ranker's metric table (evaluation report, notebooks); cut-off 10, renamed for other k.
RANKER_METRIC_COLUMNS: Final[tuple[str, ...]] = (
    "ndcg_5",
    "ndcg_10",
    "map_10",
    "recall_10",
    "coverage_10",
    "congestion_10",
    "gini_10",
    "first_stage_recall_10",
    "max_group_gap_ndcg_10",
)


RELEVANT_FROM: Final = 3

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def _discount(ranks: npt.NDArray[np.intp], k: int) -> FloatArray:
    """Log2 position discount, 0 beyond the cut-off ``k`` (ranks are 0-based)."""
    d = 1.0 / np.log2(ranks.astype(np.float64) + 2.0)
    return np.where(ranks < k, d, 0.0)


@dataclass(frozen=True)
class RankedLists:
    """Candidates of many queries sorted once: by query, then score descending (stable in row order).

    Attributes:
        order: row permutation that sorts by (query, -score, row).
        query_codes: dense query code per sorted row (0..n_queries-1).
        ranks: 0-based rank of each sorted row within its query.
        starts: first sorted row of each query.
        query_keys: the original query id of each query code.
        relevance: relevance per sorted row.
        scores: score per sorted row.
    """

    order: IntArray
    query_codes: IntArray
    ranks: IntArray
    starts: IntArray
    query_keys: npt.NDArray[np.generic]
    relevance: FloatArray
    scores: FloatArray

    @classmethod
    def build(
        cls,
        relevance: npt.ArrayLike,
        scores: npt.ArrayLike,
        query_ids: npt.ArrayLike,
    ) -> RankedLists:
        """Sort the flat arrays by query, then by score descending.

        Args:
            relevance: graded relevance per row.
            scores: ranking score per row (higher first); must be finite.
            query_ids: query id per row.

        Returns:
            The sorted view.
        """
        rel = np.asarray(relevance, dtype=np.float64)
        sc = np.asarray(scores, dtype=np.float64)
        qid = np.asarray(query_ids)
        if not (rel.shape == sc.shape == qid.shape) or rel.ndim != 1:
            raise ValueError("relevance, scores and query_ids must be 1-d arrays of the same length")
        if not np.all(np.isfinite(sc)):
            raise ValueError("scores must be finite")
        keys, codes = np.unique(qid, return_inverse=True)
        codes = codes.reshape(-1).astype(np.intp)
        order = np.lexsort((np.arange(len(sc)), -sc, codes)).astype(np.intp)
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if len(order) else np.array([], int)
        first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        ranks = (np.arange(len(order)) - first).astype(np.intp)
        return cls(
            order=order,
            query_codes=sorted_codes,
            ranks=ranks,
            starts=starts.astype(np.intp),
            query_keys=keys,
            relevance=rel[order],
            scores=sc[order],
        )

    @property
    def n_queries(self) -> int:
        """Number of distinct queries."""
        return len(self.query_keys)

    def per_query_sum(self, values: FloatArray) -> FloatArray:
        """Sum ``values`` (aligned with the sorted rows) per query."""
        return np.bincount(self.query_codes, weights=values, minlength=self.n_queries).astype(np.float64)

    def top_k_mask(self, k: int) -> npt.NDArray[np.bool_]:
        """True for sorted rows ranked in the top ``k`` of their query."""
        return self.ranks < k


def _as_ranked(
    relevance: npt.ArrayLike | RankedLists, scores: npt.ArrayLike | None, query_ids: npt.ArrayLike | None
) -> RankedLists:
    if isinstance(relevance, RankedLists):
        return relevance
    if scores is None or query_ids is None:
        raise ValueError("give scores and query_ids, or a RankedLists")
    return RankedLists.build(relevance, scores, query_ids)


def _nanmean(values: FloatArray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def ndcg_per_query(
    relevance: npt.ArrayLike | RankedLists,
    scores: npt.ArrayLike | None = None,
    query_ids: npt.ArrayLike | None = None,
    k: int = 10,
    *,
    empty_as_zero: bool = False,
) -> FloatArray:
    """NDCG@k of each query (in the order of ``RankedLists.query_keys``), tie-averaged like sklearn.

    Args:
        relevance: graded relevance per row (or a prebuilt :class:`RankedLists`).
        scores: score per row.
        query_ids: query id per row.
        k: cut-off.
        empty_as_zero: give queries without any relevant row 0 (sklearn) instead of NaN.

    Returns:
        One value in [0, 1] per query; NaN where the ideal DCG is 0 unless ``empty_as_zero``.
    """
    rl = _as_ranked(relevance, scores, query_ids)
    gains = np.power(2.0, rl.relevance) - 1.0
    disc = _discount(rl.ranks, k)
    # Tie blocks: consecutive sorted rows of one query with equal score share their mean gain.
    n = len(gains)
    new_block = np.r_[True, (rl.query_codes[1:] != rl.query_codes[:-1]) | (rl.scores[1:] != rl.scores[:-1])]
    block = np.cumsum(new_block) - 1 if n else np.array([], dtype=np.intp)
    n_blocks = int(block[-1]) + 1 if n else 0
    block_gain = np.bincount(block, weights=gains, minlength=n_blocks)
    block_size = np.bincount(block, minlength=n_blocks).astype(np.float64)
    block_disc = np.bincount(block, weights=disc, minlength=n_blocks)
    block_query = rl.query_codes[np.flatnonzero(new_block)] if n else np.array([], dtype=np.intp)
    dcg = np.bincount(
        block_query, weights=block_gain / np.maximum(block_size, 1.0) * block_disc, minlength=rl.n_queries
    )
    # Ideal: gains sorted descending within each query.
    ideal_order = np.lexsort((-gains, rl.query_codes))
    idcg = rl.per_query_sum(gains[ideal_order] * disc)  # ranks are identical per query in both orders
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0 if empty_as_zero else np.nan)
    return out.astype(np.float64)


def ndcg_at_k(
    relevance: npt.ArrayLike | RankedLists,
    scores: npt.ArrayLike | None = None,
    query_ids: npt.ArrayLike | None = None,
    k: int = 10,
    *,
    empty_as_zero: bool = False,
) -> float:
    """Mean NDCG@k over queries (exponential gains, log2 discount, tie-averaged).

    Args:
        relevance: graded relevance per row (or a prebuilt :class:`RankedLists`).
        scores: score per row.
        query_ids: query id per row.
        k: cut-off.
        empty_as_zero: count queries without relevant rows as 0 (as sklearn does) instead of skipping them.

    Returns:
        A value in [0, 1]; NaN when no query has a relevant row.
    """
    return _nanmean(ndcg_per_query(relevance, scores, query_ids, k, empty_as_zero=empty_as_zero))


def average_precision_per_query(
    relevance: npt.ArrayLike | RankedLists,
    scores: npt.ArrayLike | None = None,
    query_ids: npt.ArrayLike | None = None,
    k: int = 10,
    *,
    relevant_from: float = RELEVANT_FROM,
) -> FloatArray:
    """AP@k per query: mean of precision@i at the relevant ranks i <= k, divided by min(k, #relevant).

    Args:
        relevance: graded relevance per row (or a prebuilt :class:`RankedLists`).
        scores: score per row.
        query_ids: query id per row.
        k: cut-off.
        relevant_from: rows with relevance >= this count as relevant.

    Returns:
        One value in [0, 1] per query; NaN for queries without relevant rows.
    """
    rl = _as_ranked(relevance, scores, query_ids)
    hit = (rl.relevance >= relevant_from).astype(np.float64)
    in_k = rl.top_k_mask(k)
    hits_in_k = hit * in_k
    cum_hits = np.cumsum(hits_in_k)
    start_cum = np.r_[0.0, cum_hits][rl.starts]
    cum_in_query = cum_hits - np.repeat(start_cum, np.diff(np.r_[rl.starts, len(hit)]))
    precision = cum_in_query / (rl.ranks + 1.0)
    n_rel = rl.per_query_sum(hit)
    ap_sum = rl.per_query_sum(precision * hits_in_k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, ap_sum / np.minimum(n_rel, k), np.nan)


def map_at_k(
    relevance: npt.ArrayLike | RankedLists,
    scores: npt.ArrayLike | None = None,
    query_ids: npt.ArrayLike | None = None,
    k: int = 10,
    *,
    relevant_from: float = RELEVANT_FROM,
) -> float:
    """Mean average precision@k over queries with at least one relevant row.

    Args:
        relevance: graded relevance per row (or a prebuilt :class:`RankedLists`).
        scores: score per row.
        query_ids: query id per row.
        k: cut-off.
        relevant_from: rows with relevance >= this count as relevant.

    Returns:
        A value in [0, 1]; NaN when no query has a relevant row.
    """
    return _nanmean(average_precision_per_query(relevance, scores, query_ids, k, relevant_from=relevant_from))


def recall_per_query(
    relevance: npt.ArrayLike | RankedLists,
    scores: npt.ArrayLike | None = None,
    query_ids: npt.ArrayLike | None = None,
    k: int = 10,
    *,
    relevant_from: float = RELEVANT_FROM,
) -> FloatArray:
    """Recall@k per query: relevant rows in the top k / all relevant rows of the query.

    Args:
        relevance: graded relevance per row (or a prebuilt :class:`RankedLists`).
        scores: score per row.
        query_ids: query id per row.
        k: cut-off.
        relevant_from: rows with relevance >= this count as relevant.

    Returns:
        One value in [0, 1] per query; NaN for queries without relevant rows.
    """
    rl = _as_ranked(relevance, scores, query_ids)
    hit = (rl.relevance >= relevant_from).astype(np.float64)
    n_rel = rl.per_query_sum(hit)
    found = rl.per_query_sum(hit * rl.top_k_mask(k))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, found / np.where(n_rel > 0, n_rel, 1.0), np.nan)


def recall_at_k(
    relevance: npt.ArrayLike | RankedLists,
    scores: npt.ArrayLike | None = None,
    query_ids: npt.ArrayLike | None = None,
    k: int = 10,
    *,
    relevant_from: float = RELEVANT_FROM,
) -> float:
    """Mean recall@k over queries with at least one relevant row (relevant = ``rel >= relevant_from``).

    Args:
        relevance: graded relevance per row (or a prebuilt :class:`RankedLists`).
        scores: score per row.
        query_ids: query id per row.
        k: cut-off.
        relevant_from: rows with relevance >= this count as relevant.

    Returns:
        A value in [0, 1]; NaN when no query has a relevant row.
    """
    return _nanmean(recall_per_query(relevance, scores, query_ids, k, relevant_from=relevant_from))


def top_k_items(
    scores: npt.ArrayLike, query_ids: npt.ArrayLike, item_ids: npt.ArrayLike, k: int
) -> npt.NDArray[np.generic]:
    """The item ids that appear in the top ``k`` of every query (one entry per slot, with repeats).

    Args:
        scores: score per row.
        query_ids: query id per row.
        item_ids: item id per row.
        k: cut-off.

    Returns:
        Item ids of all top-k slots.
    """
    items = np.asarray(item_ids)
    rl = RankedLists.build(np.zeros(len(items)), scores, query_ids)
    return items[rl.order[rl.top_k_mask(k)]]


def _exposure_counts(
    scores: npt.ArrayLike, query_ids: npt.ArrayLike, item_ids: npt.ArrayLike, k: int, n_items: int
) -> FloatArray:
    """Top-k appearances per catalogue item, padded with zeros for the items never shown."""
    shown = top_k_items(scores, query_ids, item_ids, k)
    _, counts = np.unique(shown, return_counts=True)
    if len(counts) > n_items:
        raise ValueError(f"n_items={n_items} is smaller than the {len(counts)} distinct items shown")
    return np.r_[counts.astype(np.float64), np.zeros(n_items - len(counts))]


def coverage_at_k(
    scores: npt.ArrayLike, query_ids: npt.ArrayLike, item_ids: npt.ArrayLike, k: int, *, n_items: int
) -> float:
    """Catalogue coverage@k: share of the ``n_items`` catalogue items that appear in at least one top-k list.

    Args:
        scores: score per row.
        query_ids: query id per row.
        item_ids: item id per row.
        k: cut-off.
        n_items: catalogue size N.

    Returns:
        A value in [0, 1].
    """
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    shown = top_k_items(scores, query_ids, item_ids, k)
    return float(len(np.unique(shown)) / n_items)


def congestion_at_k(
    scores: npt.ArrayLike, query_ids: npt.ArrayLike, item_ids: npt.ArrayLike, k: int, *, n_items: int
) -> float:
    """Congestion@k after ReCon (Mashayekhi et al., RecSys 2023): 1 + Σ_j s_j log s_j / log N.

    ``s_j`` is item j's market share of all top-k slots and N the catalogue size. Σ s_j log s_j / log N is the
    negated normalised entropy in [-1, 0]; adding 1 gives a value in [0, 1] where 0 means the slots are spread
    evenly over the whole catalogue and 1 means every slot goes to one item (higher = more congested).

    Args:
        scores: score per row.
        query_ids: query id per row.
        item_ids: item id per row.
        k: cut-off.
        n_items: catalogue size N (> 1).

    Returns:
        A value in [0, 1]; NaN when no slot is filled.
    """
    if n_items <= 1:
        raise ValueError("n_items must be > 1")
    counts = _exposure_counts(scores, query_ids, item_ids, k, n_items)
    total = counts.sum()
    if total == 0:
        return float("nan")
    share = counts[counts > 0] / total
    return float(1.0 + np.sum(share * np.log(share)) / np.log(n_items))


def gini(values: npt.ArrayLike) -> float:
    """Gini coefficient of non-negative values.

    Args:
        values: non-negative amounts (e.g. exposure per item, zeros included).

    Returns:
        A value in [0, 1 - 1/n]: 0 = equal, near 1 = all on one item; 0 for an all-zero input.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0 or x.sum() == 0:
        return 0.0
    if np.any(x < 0):
        raise ValueError("gini needs non-negative values")
    n = x.size
    idx = np.arange(1, n + 1)
    return float(np.sum((2 * idx - n - 1) * x) / (n * x.sum()))


def gini_at_k(
    scores: npt.ArrayLike, query_ids: npt.ArrayLike, item_ids: npt.ArrayLike, k: int, *, n_items: int
) -> float:
    """Gini@k of item exposure: Gini of top-k appearance counts over the whole catalogue (unshown items = 0).

    Args:
        scores: score per row.
        query_ids: query id per row.
        item_ids: item id per row.
        k: cut-off.
        n_items: catalogue size N.

    Returns:
        A value in [0, 1].
    """
    return gini(_exposure_counts(scores, query_ids, item_ids, k, n_items))


def exposure_per_query(
    values: npt.ArrayLike, scores: npt.ArrayLike, query_ids: npt.ArrayLike, k: int
) -> tuple[npt.NDArray[np.generic], FloatArray]:
    """Position-discounted exposure of each query's top k to ``values``: Σ d(r) v / Σ d(r) over r < k.

    With ``values`` = 1 for relevant items this is the discount-weighted share of the list given to relevant
    items; with ``values`` = expected utility it is the discounted mean utility shown.

    Args:
        values: value per row (e.g. relevant indicator or utility).
        scores: score per row.
        query_ids: query id per row.
        k: cut-off.

    Returns:
        (query keys, exposure per query).
    """
    rl = RankedLists.build(values, scores, query_ids)
    disc = _discount(rl.ranks, k)
    num = rl.per_query_sum(disc * rl.relevance)
    den = rl.per_query_sum(disc)
    return rl.query_keys, np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def mean_by_group(
    per_query: FloatArray, query_groups: Sequence[Hashable] | npt.ArrayLike, *, min_size: int = 1
) -> dict[str, float]:
    """Mean of a per-query metric in each group (NaN queries skipped; groups smaller than ``min_size`` dropped).

    Args:
        per_query: metric per query.
        query_groups: group label per query (aligned with ``per_query``).
        min_size: least number of defined queries a group needs to be reported.

    Returns:
        group label (as str) -> mean.
    """
    groups = np.asarray(query_groups).astype(str)
    vals = np.asarray(per_query, dtype=np.float64)
    if groups.shape != vals.shape:
        raise ValueError("per_query and query_groups must align")
    out: dict[str, float] = {}
    for g in np.unique(groups):
        v = vals[(groups == g) & ~np.isnan(vals)]
        if v.size >= min_size:
            out[str(g)] = float(v.mean())
    return out


def group_gap(by_group: Mapping[str, float]) -> float:
    """Largest gap between groups: max - min of the per-group values (0 with fewer than two groups).

    Args:
        by_group: group -> metric value.

    Returns:
        A non-negative value.
    """
    vals = [v for v in by_group.values() if not np.isnan(v)]
    return float(max(vals) - min(vals)) if len(vals) > 1 else 0.0
