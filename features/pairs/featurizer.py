"""PairFeaturizer: (client, opportunity) pairs to a float32 matrix, one pipeline for training and serving.

Items are encoded once per catalogue (:meth:`PairFeaturizer.encode_items`, cached); clients into a batch
(:meth:`PairFeaturizer.encode_clients`; one client is a batch of one). Every feature family is written once in
:mod:`features.pairs.families` over clients x items arrays that broadcast, so one client against a catalogue and
many clients against one item run the same code. Only :class:`~features.records.ClientProfile` and
:class:`~features.records.Opportunity` are accepted (checked at run time), so audit-only attributes cannot
become features.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin

from features.errors import FeatureInputError
from features.pairs.encoding import (
    EncodedClients,
    EncodedItems,
    FloatArray,
    PairBatch,
    _check_opportunities,
    encode_clients,
    encode_items,
)
from features.pairs.families import pair_features
from features.pairs.names import DEFAULT_PRIOR_RATE, FEATURE_NAMES, FORMAT, FORMAT_VERSION
from features.pairs.retrieval import first_stage_scores, top_items
from features.records import ClientProfile, Opportunity
from features.taxonomy import Taxonomy, default_taxonomy

logger = logging.getLogger(__name__)
_ItemCache = OrderedDict[tuple[int, ...], tuple[tuple[Opportunity, ...], EncodedItems]]


class PairFeaturizer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Turns (client, opportunity) pairs into a float32 feature matrix (scikit-learn transformer API).

    Args:
        reference_date: the day against which waiting times are measured (training: the cohort date;
            serving: today). A :class:`PairBatch` may carry one date per client instead.
        taxonomy: vocabulary to encode with (default: the shipped one).
        prior_strength: pseudo-count of the acceptance prior that smooths each item's historical rate.

    Fitted attributes:
        acceptance_: opportunity id -> (accepted, shown) from the training period.
        prior_rate_: overall acceptance rate used as the prior mean (and for unseen items).
        item_effects_: opportunity id -> (acceptance effect, outcome effect) in logit units; items missing from
            it (no history) get 0, their route and kind prior (see :meth:`set_item_effects`).
        taxonomy_version_: version of the vocabulary used at fit time.
    """

    def __init__(
        self,
        reference_date: date | None = None,
        taxonomy: Taxonomy | None = None,
        prior_strength: float = 20.0,
    ) -> None:
        self.reference_date = reference_date
        self.taxonomy = taxonomy
        self.prior_strength = prior_strength

    # -- fitting ------------------------------------------------------------------------------------------------
    def _tax(self) -> Taxonomy:
        return self.taxonomy if self.taxonomy is not None else default_taxonomy()

    def fit(
        self,
        X: PairBatch,  # noqa: N803 - scikit-learn naming
        y: object = None,
        *,
        acceptance: Mapping[str, tuple[int, int]] | None = None,
    ) -> PairFeaturizer:
        """Learn the acceptance prior and each item's smoothed acceptance rate.

        Args:
            X: training pairs (checked for type; only the acceptance table is learnt).
            y: ignored (scikit-learn compatibility).
            acceptance: opportunity id -> (accepted, shown), counted over the training period only.

        Returns:
            The fitted featurizer.
        """
        del y
        if not isinstance(X, PairBatch):
            raise FeatureInputError(f"fit expects a PairBatch, got {type(X).__name__}")
        table: dict[str, tuple[int, int]] = {}
        for oid, (accepted, shown) in (acceptance or {}).items():
            a, n = int(accepted), int(shown)
            if n < 0 or a < 0 or a > n:
                raise ValueError(f"acceptance[{oid!r}]: need 0 <= accepted <= shown, got ({a}, {n})")
            table[str(oid)] = (a, n)
        total_a = sum(a for a, _ in table.values())
        total_n = sum(n for _, n in table.values())
        self.acceptance_ = table
        self.prior_rate_ = float(total_a / total_n) if total_n > 0 else DEFAULT_PRIOR_RATE
        self.item_effects_: dict[str, tuple[float, float]] = {}
        self.taxonomy_version_ = self._tax().version
        self._item_cache: _ItemCache = OrderedDict()
        return self

    def set_item_effects(self, effects: Mapping[str, tuple[float, float]]) -> PairFeaturizer:
        """Store each item's estimated acceptance and outcome effects (a second fitting step).

        The effects come from a model fitted on this featurizer's own columns (``training.item_effects``), so
        they can only be learnt after :meth:`fit`; encoded catalogues are re-encoded afterwards.

        Args:
            effects: opportunity id -> (acceptance effect, outcome effect), finite logit units.

        Returns:
            ``self``.

        Raises:
            ValueError: an effect is not finite.
        """
        table: dict[str, tuple[float, float]] = {}
        for oid, pair in effects.items():
            a, o = float(pair[0]), float(pair[1])
            if not (np.isfinite(a) and np.isfinite(o)):
                raise ValueError(f"item_effects[{oid!r}]: effects must be finite")
            table[str(oid)] = (a, o)
        self.item_effects_ = table
        self._item_cache = OrderedDict()
        return self

    def _history_counts(self, ids: Sequence[str]) -> FloatArray:
        table: Mapping[str, tuple[int, int]] = getattr(self, "acceptance_", {})
        return np.log1p(np.array([table.get(i, (0, 0))[1] for i in ids], dtype=np.float64)).astype(np.float32)

    def _item_effects(self, ids: Sequence[str], which: int) -> FloatArray:
        table: Mapping[str, tuple[float, float]] = getattr(self, "item_effects_", {})
        return np.array([table.get(i, (0.0, 0.0))[which] for i in ids], dtype=np.float32).reshape(len(ids))

    def _acceptance_rates(self, ids: Sequence[str]) -> FloatArray:
        table: Mapping[str, tuple[int, int]] = getattr(self, "acceptance_", {})
        prior = float(getattr(self, "prior_rate_", DEFAULT_PRIOR_RATE))
        strength = max(float(self.prior_strength), 0.0)
        counts = np.array([table.get(i, (0, 0)) for i in ids], dtype=np.float64).reshape(-1, 2)
        denom = counts[:, 1] + strength
        rate = np.where(denom > 0, (counts[:, 0] + strength * prior) / np.maximum(denom, 1e-12), prior)
        return rate.astype(np.float32)

    # -- per-item history (what item encoding reads) ----------------------------------------------------------
    def rates(self, ids: Sequence[str]) -> FloatArray:
        """Smoothed training-period acceptance rate per item (the prior rate for unseen items)."""
        return self._acceptance_rates(ids)

    def counts(self, ids: Sequence[str]) -> FloatArray:
        """log(1 + times shown in the training period) per item."""
        return self._history_counts(ids)

    def effects(self, ids: Sequence[str], which: int) -> FloatArray:
        """Acceptance (``which`` 0) or outcome (1) effect per item (0 without history)."""
        return self._item_effects(ids, which)

    def get_feature_names_out(self, input_features: object = None) -> npt.NDArray[np.str_]:
        """Stable feature names in column order."""
        del input_features
        return np.array(FEATURE_NAMES, dtype=str)

    # -- encoding -----------------------------------------------------------------------------------------------
    def encode_items(self, opportunities: Sequence[Opportunity]) -> EncodedItems:
        """Encode a catalogue once (cached for the same catalogue objects, so serving pays it once).

        Args:
            opportunities: the catalogue; rows of the result follow its order.

        Returns:
            The catalogue in array form.
        """
        _check_opportunities(opportunities)
        ops = tuple(opportunities)
        key = tuple(id(o) for o in ops)
        cache: _ItemCache | None = getattr(self, "_item_cache", None)
        if cache is None:
            cache = OrderedDict()
            self._item_cache = cache
        hit = cache.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], ops, strict=True)):
            cache.move_to_end(key)
            return hit[1]
        enc = encode_items(self._tax(), ops, self)
        cache[key] = (ops, enc)  # keep the objects alive so their ids stay unique
        while len(cache) > 4:
            cache.popitem(last=False)
        return enc

    def encode_client(self, client: ClientProfile) -> EncodedClients:
        """Encode one client (a batch of one).

        Raises:
            FeatureInputError: ``client`` is not a :class:`ClientProfile` (e.g. audit attributes).
        """
        return encode_clients(self._tax(), [client])

    def encode_clients(self, clients: Sequence[ClientProfile]) -> EncodedClients:
        """Encode many clients into one batch (e.g. a centre's candidate pool)."""
        return encode_clients(self._tax(), clients)

    # -- features -----------------------------------------------------------------------------------------------
    def _reference(self, reference_date: date | None) -> date:
        ref = reference_date or self.reference_date
        return ref if ref is not None else date.today()

    @staticmethod
    def _positions(positions: npt.ArrayLike, size: int, what: str) -> npt.NDArray[np.int64]:
        idx = np.asarray(positions, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(f"{what}: position out of range")
        return idx

    def transform_encoded(
        self,
        enc_client: EncodedClients,
        enc_items: EncodedItems,
        item_idx: npt.NDArray[np.integer[Any]],
        reference_date: date | None = None,
    ) -> FloatArray:
        """Feature rows of one encoded client (a batch of one) against catalogue positions ``item_idx``.

        Args:
            enc_client: from :meth:`encode_client`.
            enc_items: from :meth:`encode_items`.
            item_idx: positions in the catalogue, one row each (repeats allowed).
            reference_date: overrides the featurizer's reference date.

        Returns:
            float32 array ``(len(item_idx), len(FEATURE_NAMES))`` without NaN or inf.
        """
        if not isinstance(enc_client, EncodedClients) or not isinstance(enc_items, EncodedItems):
            raise FeatureInputError("transform_encoded expects EncodedClients (of one) and EncodedItems")
        if len(enc_client) != 1:
            raise FeatureInputError(f"transform_encoded expects one client, got {len(enc_client)}")
        idx = self._positions(item_idx, len(enc_items), "item_idx")
        one = np.zeros(1, dtype=np.int64)
        return pair_features(self._tax(), enc_client, one, enc_items, idx, self._reference(reference_date))

    def transform(self, X: PairBatch) -> FloatArray:  # noqa: N803 - scikit-learn naming
        """Feature matrix of a batch of pairs, rows in the batch's order.

        Args:
            X: the pairs.

        Returns:
            float32 array ``(len(X), len(FEATURE_NAMES))`` without NaN or inf.

        Raises:
            TypeError: ``X`` is not a :class:`PairBatch` or holds something other than the domain records.
        """
        if not isinstance(X, PairBatch):
            raise FeatureInputError(f"transform expects a PairBatch, got {type(X).__name__}")
        out = np.zeros((len(X), len(FEATURE_NAMES)), dtype=np.float32)
        if len(X) == 0:
            return out
        items = self.encode_items(X.opportunities)
        order = np.argsort(X.client_idx, kind="stable")
        sorted_clients = X.client_idx[order]
        starts = np.flatnonzero(np.r_[True, sorted_clients[1:] != sorted_clients[:-1]])
        ends = np.r_[starts[1:], sorted_clients.size]
        used = np.unique(sorted_clients)
        batch = self.encode_clients([X.clients[int(c)] for c in used])
        row_of = {int(c): r for r, c in enumerate(used)}
        tax = self._tax()
        for start, end in zip(starts, ends, strict=True):  # one block per client, not per pair
            rows = order[start:end]
            ci = int(sorted_clients[start])
            ref = X.reference_dates[ci] if X.reference_dates is not None else None
            block_rows = np.array([row_of[ci]], dtype=np.int64)
            opp = np.asarray(X.opp_idx[rows], dtype=np.int64)
            out[rows] = pair_features(tax, batch, block_rows, items, opp, self._reference(ref))
        return out

    def first_stage(
        self,
        enc_client: EncodedClients,
        enc_items: EncodedItems,
        item_idx: npt.NDArray[np.integer[Any]],
        k: int,
    ) -> npt.NDArray[np.int64]:
        """Cheap retrieval: the ``k`` most promising of ``item_idx`` for one client (:mod:`features.pairs.retrieval`).

        Returns:
            Catalogue positions (a subset of ``item_idx``), best first; ties keep the order of ``item_idx``.
        """
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        return top_items(enc_client, 0, enc_items, idx, k)

    def transform_many_clients(
        self,
        clients: EncodedClients,
        enc_items: EncodedItems,
        item_index: int,
        reference_date: date | None = None,
        rows: npt.NDArray[np.integer[Any]] | None = None,
    ) -> FloatArray:
        """Feature rows of many clients against one catalogue item (the same families as every other call).

        Args:
            clients: from :meth:`encode_clients`.
            enc_items: from :meth:`encode_items`.
            item_index: the item's position in ``enc_items``.
            reference_date: overrides the featurizer's reference date.
            rows: which clients of the batch (default all), one feature row each.

        Returns:
            float32 array ``(len(rows), len(FEATURE_NAMES))``.
        """
        if not 0 <= item_index < len(enc_items):
            raise ValueError("item_index: position out of range of the encoded catalogue")
        idx = np.arange(len(clients)) if rows is None else self._positions(rows, len(clients), "rows")
        one = np.array([item_index], dtype=np.int64)
        return pair_features(self._tax(), clients, idx, enc_items, one, self._reference(reference_date))

    def first_stage_clients(
        self, clients: EncodedClients, enc_items: EncodedItems, item_index: int, rows: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """The first-stage score of clients ``rows`` against one item (higher = more promising)."""
        idx = self._positions(rows, len(clients), "rows")
        return first_stage_scores(clients, idx, enc_items, np.array([item_index], dtype=np.int64))[:, 0]

    # -- persistence --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (parameters, acceptance table, item effects, taxonomy version, feature names)."""
        acceptance = getattr(self, "acceptance_", None)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "reference_date": self.reference_date.isoformat() if self.reference_date else None,
            "prior_strength": float(self.prior_strength),
            "taxonomy_version": getattr(self, "taxonomy_version_", self._tax().version),
            "fitted": acceptance is not None,
            "prior_rate": float(getattr(self, "prior_rate_", DEFAULT_PRIOR_RATE)),
            "acceptance": {k: [int(a), int(n)] for k, (a, n) in sorted((acceptance or {}).items())},
            "item_effects": {
                k: [float(a), float(o)] for k, (a, o) in sorted(getattr(self, "item_effects_", {}).items())
            },
            "feature_names": list(FEATURE_NAMES),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], taxonomy: Taxonomy | None = None) -> PairFeaturizer:
        """Rebuild a featurizer from :meth:`to_dict` output.

        Raises:
            ValueError: the dict is not a featurizer of this format or its feature names differ from this code's.
        """
        if d.get("format") != FORMAT or d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} state: {d.get('format')!r} v{d.get('format_version')}")
        if list(d.get("feature_names", [])) != list(FEATURE_NAMES):
            raise ValueError("feature_names differ from this version of features.pairs: retrain the model")
        ref = d.get("reference_date")
        obj = cls(
            reference_date=date.fromisoformat(ref) if ref else None,
            taxonomy=taxonomy,
            prior_strength=float(d.get("prior_strength", 20.0)),
        )
        if d.get("fitted"):
            obj.acceptance_ = {str(k): (int(v[0]), int(v[1])) for k, v in d.get("acceptance", {}).items()}
            obj.prior_rate_ = float(d["prior_rate"])
            obj.item_effects_ = {}
            obj.set_item_effects({str(k): (float(v[0]), float(v[1])) for k, v in d.get("item_effects", {}).items()})
            obj.taxonomy_version_ = str(d.get("taxonomy_version", ""))
            obj._item_cache = OrderedDict()
            current = obj._tax().version
            if obj.taxonomy_version_ != current:
                logger.warning(
                    "featurizer was fitted with taxonomy %s, running with %s", obj.taxonomy_version_, current
                )
        return obj
