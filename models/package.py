"""The model boundary: :class:`PolkuModel`, a fitted featurizer and ranker with the metadata that identifies them.

Callers rank items for a client (:meth:`PolkuModel.rank`, :meth:`PolkuModel.rank_groups`), rank clients for an
item (:meth:`PolkuModel.rank_clients`), or score prepared rows (:meth:`PolkuModel.features`,
:meth:`PolkuModel.score_rows`); nothing outside this module reaches into the featurizer or the ranker
(``tests/models/test_model_boundary.py``). Saving, loading and the MLflow pyfunc are in :mod:`models.packaging`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.errors import PolkuError
from features.pairs import EncodedClients, EncodedItems, PairFeaturizer
from features.records import KINDS, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy
from models.baselines import PointsRanker
from models.compiled import TreeEngine
from models.exploration import Deterministic, SlatePolicy
from models.rankers import LightGBMRanker, Ranker

logger = logging.getLogger(__name__)

DEFAULT_FIRST_STAGE_K: Final = 300
PREDICTION_EXTRAS: Final = ("p_accept", "expected_outcome")
"""Pyfunc output columns beside ``score`` (NaN for rankers without outcome models)."""


class ModelLoadError(PolkuError):
    """A model bundle or MLflow artifact is missing, corrupt or incompatible with this code or taxonomy."""


@dataclass(frozen=True)
class RankResult:
    """Top-k of one client's candidates.

    Attributes:
        indices: catalogue positions, best first.
        scores: ranker score per returned item.
        contributions: ``(k, n_features + 1)`` per-feature contributions of the returned items (last = bias).
        n_scored: how many candidates the ranker scored (after the first stage).
        feature_names: column names of ``contributions`` (without the bias column).
        outcomes: per returned item, the ranker's outcome estimates (``p_accept``, ``expected_outcome``, ...;
            see ``models.outcome``), or None for rankers without them (the points fallback).
        plain_ranks: with congestion prices, each returned item's 1-based rank by its score alone (None without).
        propensities: per returned item, its placement probability under ``policy`` (``models.exploration``).
        explored: True when the policy sampled (the slate differs from the score order).
        policy: name of the serving policy.
    """

    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    contributions: npt.NDArray[np.float64]
    n_scored: int
    feature_names: tuple[str, ...]
    outcomes: Mapping[str, npt.NDArray[np.float64]] | None = None
    plain_ranks: npt.NDArray[np.int64] | None = None
    propensities: npt.NDArray[np.float64] | None = None
    explored: bool = False
    policy: str = "deterministic"


@dataclass(frozen=True)
class ClientRanking:
    """Clients ranked for one item.

    Attributes:
        rows: rows of the client batch, best first.
        scores: ranker score per returned row.
        n_scored: how many clients the ranker scored (after the first stage).
        propensities: per returned row, its placement probability under ``policy``.
        explored: True when the policy sampled.
        policy: name of the serving policy.
    """

    rows: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    n_scored: int
    propensities: npt.NDArray[np.float64] | None = None
    explored: bool = False
    policy: str = "deterministic"


class PolkuModel:
    """A fitted featurizer, a ranker and the metadata that identifies them.

    Args:
        featurizer: the fitted pair featurizer.
        ranker: a fitted ranker over the featurizer's columns.
        metadata: at least ``name`` and ``version``; ``taxonomy_version`` and ``feature_names`` are filled in
            from the featurizer and checked when given.
        first_stage_k: candidate lists longer than this (items of one client, or clients of one item) are cut by
            the featurizer's cheap first stage before the ranker scores them; one setting for both directions,
            logged with the training run.

    Raises:
        ModelLoadError: featurizer, ranker and metadata disagree on feature names or taxonomy version.
    """

    def __init__(
        self,
        featurizer: PairFeaturizer,
        ranker: Ranker,
        metadata: Mapping[str, Any] | None = None,
        *,
        first_stage_k: int = DEFAULT_FIRST_STAGE_K,
    ) -> None:
        self.featurizer = featurizer
        self.ranker = ranker
        names = [str(n) for n in featurizer.get_feature_names_out()]
        tax_version = str(getattr(featurizer, "taxonomy_version_", None) or default_taxonomy().version)
        meta: dict[str, Any] = {
            "name": "polku-ranker",
            "version": "0",
            "ranker": ranker.name,
            "fallback": False,
            **dict(metadata or {}),
        }
        meta.setdefault("taxonomy_version", tax_version)
        meta.setdefault("feature_names", names)
        meta["first_stage_k"] = int(first_stage_k)
        if list(meta["feature_names"]) != names:
            raise ModelLoadError("metadata.feature_names differ from the featurizer's: retrain or re-export the model")
        ranker_names = ranker.feature_names_
        if ranker_names is None or list(ranker_names) != names:
            raise ModelLoadError("ranker feature names differ from the featurizer's: the model is incompatible")
        if meta["taxonomy_version"] != tax_version:
            raise ModelLoadError(
                f"metadata.taxonomy_version {meta['taxonomy_version']!r} differs from the featurizer's {tax_version!r}"
            )
        self.metadata = meta

    @property
    def first_stage_k(self) -> int:
        """Candidates the ranker scores per list (the rest are cut by the first stage); part of the model."""
        return int(self.metadata["first_stage_k"])

    @first_stage_k.setter
    def first_stage_k(self, value: int) -> None:
        self.metadata["first_stage_k"] = int(value)

    def __repr__(self) -> str:
        return f"PolkuModel(name={self.name!r}, version={self.version!r}, ranker={self.ranker.name!r})"

    @property
    def name(self) -> str:
        """Model name from the metadata."""
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        """Model version from the metadata."""
        return str(self.metadata["version"])

    @property
    def is_fallback(self) -> bool:
        """True for the built-in points baseline served when no champion is available."""
        return bool(self.metadata.get("fallback", False))

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature column names."""
        return tuple(self.metadata["feature_names"])

    @property
    def trees(self) -> TreeEngine | None:
        """Which code computes the ranker's trees (compiled library or LightGBM's booster); None without trees."""
        forest = forest_of(self.ranker)
        return None if forest is None else forest.tree_engine

    def encode_items(self, opportunities: Sequence[Opportunity]) -> EncodedItems:
        """Encode a catalogue once (cached by the featurizer)."""
        return self.featurizer.encode_items(opportunities)

    def encode_client(self, client: ClientProfile) -> EncodedClients:
        """Encode one client (a batch of one)."""
        return self.featurizer.encode_client(client)

    def encode_clients(self, clients: Sequence[ClientProfile]) -> EncodedClients:
        """Encode many clients into one batch (a candidate pool)."""
        return self.featurizer.encode_clients(clients)

    def features(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        item_idx: npt.ArrayLike,
        reference_date: date | None = None,
    ) -> npt.NDArray[np.float32]:
        """Prepared feature rows of one client against catalogue positions (for :meth:`score_rows`)."""
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        return self.featurizer.transform_encoded(self._encoded(enc_client), enc_items, idx, reference_date)

    def score_rows(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Ranker scores of prepared rows (from :meth:`features`; rows of many requests may be stacked)."""
        return self.ranker.score(np.asarray(X, dtype=np.float32))

    def explain_rows(
        self, X: npt.ArrayLike, scores: npt.ArrayLike | None = None
    ) -> tuple[npt.NDArray[np.float64], dict[str, npt.NDArray[np.float64]] | None]:
        """Per-feature contributions and outcome estimates of prepared rows, with one call into the trees.

        Contributions are ``(n, n_features + 1)`` (last column the bias); rows sum to ``scores`` when given.
        """
        return self.ranker.explanation(np.asarray(X, dtype=np.float32), scores)

    def outcome_rows(self, X: npt.ArrayLike) -> dict[str, npt.NDArray[np.float64]] | None:
        """Outcome estimates of prepared rows (``p_accept``, ``expected_outcome``, ...), None for the baselines."""
        return self.ranker.outcomes(np.asarray(X, dtype=np.float32))

    def first_stage(
        self, enc_client: EncodedClients | ClientProfile, enc_items: EncodedItems, item_idx: npt.ArrayLike, k: int
    ) -> npt.NDArray[np.int64]:
        """The ``k`` most promising of ``item_idx`` by the cheap first stage, best first."""
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        return np.asarray(self.featurizer.first_stage(self._encoded(enc_client), enc_items, idx, k), dtype=np.int64)

    def rank_clients(
        self,
        clients: EncodedClients,
        enc_items: EncodedItems,
        item_index: int,
        rows: npt.ArrayLike,
        k: int,
        reference_date: date | None = None,
        *,
        policy: SlatePolicy | None = None,
        seed: int | None = None,
    ) -> ClientRanking:
        """The best ``k`` of clients ``rows`` of a batch for one catalogue item (candidate lists).

        More than ``first_stage_k`` eligible clients are cut by the first stage; the survivors are featurized
        and scored in one ranker call. Ties are broken by client id.

        Args:
            clients: from :meth:`encode_clients`.
            enc_items: the encoded catalogue.
            item_index: the item's position in ``enc_items``.
            rows: the eligible clients' rows in ``clients``.
            k: how many to return.
            reference_date: day against which waiting times are measured.
            policy: serving policy (default: deterministic, the best ``k``); see ``models.exploration``.
            seed: seed of a sampling policy's draw.

        Returns:
            Rows best first with their scores, and how many the ranker scored.
        """
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.first_stage_k > 0 and idx.size > self.first_stage_k:
            first = self.featurizer.first_stage_clients(clients, enc_items, item_index, idx)
            keep = np.argpartition(-first, self.first_stage_k - 1)[: self.first_stage_k]
            idx = np.sort(idx[keep])
        if idx.size == 0 or k <= 0:
            return ClientRanking(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), int(idx.size))
        X = self.featurizer.transform_many_clients(clients, enc_items, item_index, reference_date, rows=idx)
        scores = self.score_rows(X)
        if policy is not None and not isinstance(policy, Deterministic):
            # Sampling needs the whole scored pool in a fixed order: client id order, so ties are reproducible.
            by_id = np.argsort(np.array([clients.client_ids[int(r)] for r in idx], dtype=str), kind="stable")
            slate = policy.select(scores[by_id], k, seed)
            chosen = by_id[slate.order]
            return ClientRanking(
                idx[chosen], scores[chosen], int(idx.size), slate.propensities, slate.explored, slate.policy
            )
        n = min(k, idx.size)
        top = np.argpartition(-scores, n - 1)[:n] if n < idx.size else np.arange(idx.size)
        ids = np.array([clients.client_ids[int(r)] for r in idx[top]], dtype=str)
        order = top[np.lexsort((ids, -scores[top]))]
        return ClientRanking(idx[order], scores[order], int(idx.size), np.ones(order.size))

    def tree_count(self) -> int | None:
        """Trees the ranker evaluates per row (None for rankers without trees)."""
        forest = forest_of(self.ranker)
        return None if forest is None or forest.booster_ is None else int(forest.booster_.num_trees())

    def points_baseline(self, *, name: str = "points") -> PolkuModel:
        """The points ranker over this model's featurizer (the service's fallback, and the gate's reference)."""
        return build_fallback_model(self.featurizer, name=name)

    def feature_importance(self, importance_type: str = "gain") -> dict[str, float] | None:
        """Importance per feature of a learnt ranker (None for the points and popularity baselines)."""
        importance = getattr(self.ranker, "feature_importance", None)
        return None if importance is None else dict(importance(importance_type))

    def score(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        item_idx: npt.ArrayLike,
        reference_date: date | None = None,
    ) -> npt.NDArray[np.float64]:
        """Ranker scores of one client against catalogue positions ``item_idx`` (no first stage)."""
        enc = self._encoded(enc_client)
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        return self.score_rows(self.features(enc, enc_items, idx, reference_date))

    def rank(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        item_idx: npt.ArrayLike,
        k: int,
        reference_date: date | None = None,
    ) -> RankResult:
        """Top-``k`` of ``item_idx`` for one client, with contributions for the returned items only.

        With more than ``first_stage_k`` candidates, the featurizer's first stage keeps the
        ``first_stage_k`` most promising before the ranker scores them (two-stage retrieval).

        Args:
            enc_client: the encoded client (a profile is encoded on the fly).
            enc_items: the encoded catalogue.
            item_idx: candidate catalogue positions (normally the eligible ones).
            k: how many to return.
            reference_date: day against which waiting times are measured (default: the featurizer's).

        Returns:
            Indices, scores and contributions of the best ``min(k, len(item_idx))`` candidates.
        """
        enc = self._encoded(enc_client)
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        if self.first_stage_k > 0 and idx.size > self.first_stage_k:
            idx = self.first_stage(enc, enc_items, idx, self.first_stage_k)
        n_feat = len(self.feature_names)
        if idx.size == 0 or k <= 0:
            return RankResult(
                indices=np.zeros(0, dtype=np.int64),
                scores=np.zeros(0, dtype=np.float64),
                contributions=np.zeros((0, n_feat + 1), dtype=np.float64),
                n_scored=int(idx.size),
                feature_names=self.feature_names,
            )
        X = self.features(enc, enc_items, idx, reference_date)
        scores = self.score_rows(X)
        top = np.argsort(-scores, kind="stable")[:k]
        contributions, outcomes = self.explain_rows(X[top], scores[top])
        return RankResult(
            indices=idx[top],
            scores=scores[top],
            contributions=contributions,
            n_scored=int(idx.size),
            feature_names=self.feature_names,
            outcomes=outcomes,
        )

    def rank_groups(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        groups: Sequence[npt.ArrayLike],
        k: int,
        reference_date: date | None = None,
        *,
        prices: npt.NDArray[np.float64] | None = None,
        policy: SlatePolicy | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[RankResult]:
        """:meth:`rank` for several candidate lists of one client (e.g. one per kind) with one ranker call.

        Each group goes through the first stage on its own; the survivors of all groups are featurized and
        scored together, and contributions are computed once for all returned items (each LightGBM call has
        a fixed cost, so three calls per request cost more than one). A sampling ``policy``
        (``models.exploration``) chooses each group's slate among that group's scored (eligible) candidates,
        with one seed per group.

        With ``prices`` (congestion price per catalogue position, ``models.allocation``) each list is sorted by
        score minus price, and results carry each item's rank by score alone (``plain_ranks``).

        Returns:
            One result per group, equal to ``rank`` on that group under the deterministic policy (without prices).
        """
        serving: SlatePolicy = policy or Deterministic()
        enc = self._encoded(enc_client)
        kept = self._first_stage_groups(enc, enc_items, groups)
        sizes = [i.size for i in kept]
        all_idx = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        n_feat = len(self.feature_names)
        if all_idx.size == 0 or k <= 0:
            X = np.zeros((0, n_feat), dtype=np.float32)
            scores = np.zeros(0, dtype=np.float64)
        else:
            X = self.features(enc, enc_items, all_idx, reference_date)
            scores = self.score_rows(X)
        order_by = scores if prices is None else scores - prices[all_idx]
        bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        slates = [  # a sampling policy explores around the price-adjusted order, as serving shows it
            serving.select(order_by[bounds[g] : bounds[g + 1]], k, None if seeds is None else seeds[g])
            for g in range(len(kept))
        ]
        tops = [bounds[g] + slate.order for g, slate in enumerate(slates)]
        plain: list[npt.NDArray[np.int64] | None] = [None] * len(kept)
        if prices is not None:
            for g, top in enumerate(tops):
                position = np.empty(sizes[g], dtype=np.int64)  # rank by score alone, ties as rank() breaks them
                position[np.argsort(-scores[bounds[g] : bounds[g + 1]], kind="stable")] = np.arange(1, sizes[g] + 1)
                plain[g] = position[top - bounds[g]]
        rows = np.concatenate(tops) if tops else np.zeros(0, dtype=np.int64)
        contrib, outcomes = self.explain_rows(X[rows], scores[rows])
        out: list[RankResult] = []
        start = 0
        for g, top in enumerate(tops):
            end = start + top.size
            out.append(
                RankResult(
                    indices=all_idx[top],
                    scores=scores[top],
                    contributions=contrib[start:end],
                    n_scored=sizes[g],
                    feature_names=self.feature_names,
                    outcomes=None if outcomes is None else {key: v[start:end] for key, v in outcomes.items()},
                    plain_ranks=plain[g],
                    propensities=slates[g].propensities,
                    explored=slates[g].explored,
                    policy=slates[g].policy,
                )
            )
            start = end
        return out

    def _first_stage_groups(
        self, enc: EncodedClients, enc_items: EncodedItems, groups: Sequence[npt.ArrayLike]
    ) -> list[npt.NDArray[np.int64]]:
        kept: list[npt.NDArray[np.int64]] = []
        for group in groups:
            idx = np.asarray(group, dtype=np.int64).reshape(-1)
            if self.first_stage_k > 0 and idx.size > self.first_stage_k:
                idx = self.first_stage(enc, enc_items, idx, self.first_stage_k)
            kept.append(idx)
        return kept

    def score_groups(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        groups: Sequence[npt.ArrayLike],
        reference_date: date | None = None,
    ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
        """Per group, the positions :meth:`rank_groups` would sort (after the first stage) and their scores."""
        kept = self._first_stage_groups(self._encoded(enc_client), enc_items, groups)
        all_idx = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        X = self.features(enc_client, enc_items, all_idx, reference_date) if all_idx.size else None
        scores = np.zeros(0, dtype=np.float64) if X is None else self.score_rows(X)
        bounds = np.r_[0, np.cumsum([i.size for i in kept])].astype(np.int64)
        return [(idx, scores[bounds[g] : bounds[g + 1]]) for g, idx in enumerate(kept)]

    def outcome_reference(self, kind: str) -> dict[str, float] | None:
        """Mean outcome estimates of one kind over the training rows (the yardstick of outcome reasons)."""
        reference: Mapping[str, Sequence[float]] | None = getattr(self.ranker, "reference_", None)
        if not reference or kind not in KINDS:
            return None
        k = KINDS.index(kind)
        return {key: float(values[k]) for key, values in reference.items() if len(values) > k}

    def _encoded(self, client: EncodedClients | ClientProfile) -> EncodedClients:
        return self.featurizer.encode_client(client) if isinstance(client, ClientProfile) else client


def forest_of(ranker: Ranker) -> LightGBMRanker | None:
    """The LightGBM ranker whose trees score: the ranker itself, or the outcome-aware ranker's acceptance model."""
    inner = getattr(ranker, "acceptance_", None)
    candidate = ranker if inner is None else inner
    return candidate if isinstance(candidate, LightGBMRanker) else None


def build_fallback_model(featurizer: PairFeaturizer, *, name: str = "points-baseline") -> PolkuModel:
    """The Job Market Finland style points model served when no champion can be loaded.

    Args:
        featurizer: a featurizer (fitted or not; unfitted uses the acceptance prior).
        name: model name reported to callers.
    """
    names = [str(n) for n in featurizer.get_feature_names_out()]
    ranker = PointsRanker().bind(names)
    meta = {"name": name, "version": "builtin", "ranker": ranker.name, "fallback": True}
    return PolkuModel(featurizer, ranker, meta)
