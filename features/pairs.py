"""Pair features: (client, opportunity) pairs to a float32 matrix, one pipeline for training and serving.

Items are encoded once per catalogue (:meth:`PairFeaturizer.encode_items`): essential, optional and gained
skills become sparse CSR matrices over ``taxonomy.skill_index`` and every other attribute a numpy column. A
client is encoded once per request (:meth:`PairFeaturizer.encode_client`): a level-weighted skill vector, ISCO
prefixes of prior and goal occupations, language ordinals. :meth:`PairFeaturizer.transform_encoded` then builds
the rows of one client against any subset of the catalogue with array operations only (no per-pair Python).

Only :class:`~features.records.ClientProfile` and :class:`~features.records.Opportunity` are accepted (checked
at run time), so audit-only attributes cannot become features.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from features.eligibility import S2_OFFSET_STEPS
from features.errors import FeatureInputError
from features.language import level_ordinal
from features.records import (
    KINDS,
    LITERACY_LEVELS,
    ROUTES,
    SUPPORT_LEVELS,
    ClientProfile,
    OccupationRef,
    Opportunity,
)
from features.taxonomy import Taxonomy, default_taxonomy

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

LANGS: Final[tuple[str, ...]] = ("fi", "sv", "en")
ISCO_DEPTHS: Final[tuple[int, ...]] = (1, 2, 3, 4)
FORMAT: Final = "polku-pair-featurizer"
FORMAT_VERSION: Final = 2
DEFAULT_PRIOR_RATE: Final = 0.3
"""Acceptance prior used before :meth:`PairFeaturizer.fit` has seen any history."""
NO_INTAKE_DAYS: Final = 730.0
"""Days to start reported for an item with no intake left (the ``no_intake`` flag says so too)."""
PRIOR_YEARS_SCALE: Final = 3.0
"""Years of prior work at which occupation experience reaches 1 - 1/e of its full weight."""
_RECOGNITION_ORDER: Final[dict[str, int]] = {"none": 0, "pending": 1, "partial": 2, "recognised": 3, "not_needed": 3}
_DATE_KEY: Final = 10_000_000  # > any date.toordinal(): item index * _DATE_KEY + ordinal sorts by (item, date)

FEATURE_NAMES: Final[tuple[str, ...]] = (
    # skills
    "ess_cov",
    "ess_cov_any",
    "ess_missing",
    "ess_n",
    "opt_cov",
    "opt_cov_any",
    "opt_n",
    "goal_skill_gain",
    # occupation
    *(f"occ_prior_isco{d}" for d in ISCO_DEPTHS),
    *(f"occ_goal_isco{d}" for d in ISCO_DEPTHS),
    "has_occupation",
    # language, literacy, digital
    *(f"lang_gap_{lang}" for lang in LANGS),
    "lang_gap_best",
    "lang_required",
    "lang_margin_fi",
    "lang_gain_fi",
    "client_fi_level",
    "lang_fi_uncertain",
    "s2_support",
    "lit_gap",
    "lit_gain",
    "digital_gap",
    # education
    "edu_met",
    "edu_gap",
    "isced_gain",
    "recog_required",
    "recog_met",
    "client_recognition",
    # place and time
    "dist_km",
    "dist_ratio",
    "days_to_start",
    "no_intake",
    "continuous",
    "duration_weeks",
    "seats_left",
    "fill_ratio",
    # support
    "support_need",
    "item_support",
    "support_x",
    "support_gap",
    # kind and route, preferences
    *(f"kind_{k}" for k in KINDS),
    *(f"route_{r}" for r in ROUTES),
    "pref_work",
    "pref_education",
    "path_match",
    "pay_subsidy",
    "te_decision",
    # history and client
    "hist_accept_rate",
    "item_history_n",
    "item_accept_effect",
    "item_outcome_effect",
    "age",
    "client_digital",
    "client_literacy",
    "client_isced",
)
"""Stable feature names, in column order."""
_COL: Final[dict[str, int]] = {name: i for i, name in enumerate(FEATURE_NAMES)}
ITEM_HISTORY_FEATURES: Final[tuple[str, ...]] = (
    "hist_accept_rate",
    "item_history_n",
    "item_accept_effect",
    "item_outcome_effect",
)
"""Columns learnt from the training period about each item itself (not about the client-item fit).

``item_history_n`` is log(1 + times shown); ``item_accept_effect`` and ``item_outcome_effect`` are the item's
shrunken acceptance and outcome effects (logit units, 0 = the item's route and kind prior) estimated by
``training.item_effects`` and stored in the featurizer (:meth:`PairFeaturizer.set_item_effects`).
"""


# -- inputs ---------------------------------------------------------------------------------------------------------
def _check_clients(clients: Sequence[object]) -> None:
    for c in clients:
        if not isinstance(c, ClientProfile):
            raise FeatureInputError(
                f"pair features accept ClientProfile records only, got {type(c).__name__} "
                "(audit attributes never enter the features)"
            )


def _check_opportunities(opportunities: Sequence[object]) -> None:
    for o in opportunities:
        if not isinstance(o, Opportunity):
            raise FeatureInputError(f"pair features accept Opportunity records only, got {type(o).__name__}")


@dataclass(frozen=True)
class PairBatch:
    """Pairs ``(clients[client_idx[i]], opportunities[opp_idx[i]])`` for ``i`` in ``range(len(client_idx))``.

    Attributes:
        clients: client profiles (only :class:`ClientProfile`; anything else raises :class:`TypeError`).
        opportunities: catalogue items (only :class:`Opportunity`).
        client_idx: position in ``clients`` per pair.
        opp_idx: position in ``opportunities`` per pair.
        reference_dates: optional reference date per client (aligned with ``clients``), e.g. the cohort date
            in training; when absent the featurizer's ``reference_date`` is used.
    """

    clients: Sequence[ClientProfile]
    opportunities: Sequence[Opportunity]
    client_idx: npt.NDArray[np.integer[Any]]
    opp_idx: npt.NDArray[np.integer[Any]]
    reference_dates: Sequence[date] | None = None

    def __post_init__(self) -> None:
        _check_clients(self.clients)
        _check_opportunities(self.opportunities)
        ci = np.asarray(self.client_idx, dtype=np.int64).reshape(-1)
        oi = np.asarray(self.opp_idx, dtype=np.int64).reshape(-1)
        if ci.shape != oi.shape:
            raise ValueError(f"client_idx and opp_idx differ in length ({ci.size} != {oi.size})")
        if ci.size and (ci.min() < 0 or ci.max() >= len(self.clients)):
            raise ValueError("client_idx: index out of range of clients")
        if oi.size and (oi.min() < 0 or oi.max() >= len(self.opportunities)):
            raise ValueError("opp_idx: index out of range of opportunities")
        if self.reference_dates is not None and len(self.reference_dates) != len(self.clients):
            raise ValueError("reference_dates: give one date per client")
        object.__setattr__(self, "client_idx", ci)
        object.__setattr__(self, "opp_idx", oi)

    def __len__(self) -> int:
        return int(self.client_idx.size)


# -- encoded forms --------------------------------------------------------------------------------------------------
@dataclass
class EncodedItems:
    """A catalogue in array form (build with :meth:`PairFeaturizer.encode_items`; rows follow the catalogue)."""

    opportunity_ids: tuple[str, ...]
    essential: sp.csr_matrix
    optional: sp.csr_matrix
    gained: sp.csr_matrix
    isco: IntArray  # (n, 4): ISCO prefix as int at depth 1..4, -1 when unknown
    min_lang: IntArray  # (n, 3) ordinals, 0 when not required
    lang_reached: IntArray  # (n, 3) ordinals, -1 when completion gives none
    s2: npt.NDArray[np.bool_]
    min_lit: IntArray
    lit_reached: IntArray  # -1 when none
    min_digital: IntArray
    digital_reached: IntArray  # -1 when none
    min_isced: IntArray
    isced_reached: IntArray  # -1 when none
    needs_recognition: npt.NDArray[np.bool_]
    municipalities: tuple[str, ...]
    mun: IntArray
    continuous: npt.NDArray[np.bool_]
    intake_keys: IntArray  # item * _DATE_KEY + date ordinal, ascending
    intake_end: IntArray  # per item, end of its run in intake_keys
    duration: FloatArray
    seats_left: FloatArray
    fill_ratio: FloatArray
    support: IntArray
    kind: IntArray
    route: IntArray  # -1 for non-trainings
    pay_subsidy: npt.NDArray[np.bool_]
    te_decision: npt.NDArray[np.bool_]
    hist_rate: FloatArray
    history_n: FloatArray  # log(1 + times shown in the training period)
    accept_effect: FloatArray
    outcome_effect: FloatArray
    _dist_cache: dict[str, FloatArray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.opportunity_ids)

    def distances_from(self, taxonomy: Taxonomy, municipality: str) -> FloatArray:
        """Distance in km from a municipality to every item (cached per municipality)."""
        row = self._dist_cache.get(municipality)
        if row is None:
            per_mun = taxonomy.distance_matrix([municipality], list(self.municipalities))[0]
            row = per_mun[self.mun].astype(np.float32)
            self._dist_cache[municipality] = row
        return row


@dataclass(frozen=True)
class EncodedClient:
    """One client in array form (build with :meth:`PairFeaturizer.encode_client`)."""

    client_id: str
    skill_idx: IntArray  # sorted skill positions
    skill_weight: FloatArray  # level / 4 per skill in skill_idx
    goal_missing_idx: IntArray  # essential skills of goal occupations the client lacks
    prior_keys: tuple[IntArray, ...]  # per ISCO depth: sorted prefixes of prior occupations
    prior_weights: tuple[FloatArray, ...]  # per depth: experience weight (0..1) of each prefix
    goal_keys: tuple[IntArray, ...]  # per depth: sorted prefixes of goal occupations
    lang: IntArray  # (3,) ordinals fi, sv, en
    fi_uncertain: bool
    literacy: int
    digital: int
    isced: int
    recognition: int
    municipality: str
    max_travel_km: float
    support: int
    preferred_path: str
    age: int


# -- helpers --------------------------------------------------------------------------------------------------------
def _isco_prefixes(code: str | None) -> list[int]:
    """ISCO code as int prefixes for depths 1..4 (-1 beyond the code's own depth)."""
    if not code:
        return [-1] * len(ISCO_DEPTHS)
    return [int(code[:d]) if len(code) >= d else -1 for d in ISCO_DEPTHS]


def _occupation_isco(ref: OccupationRef | None) -> str | None:
    return None if ref is None else ref.isco


def _literacy_reached(o: Opportunity) -> int:
    reached = o.completion.literacy_reached
    return -1 if reached is None else LITERACY_LEVELS.index(reached)


def _skills_csr(rows: Sequence[Sequence[str]], index: Mapping[str, int], n_cols: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    cols: list[int] = []
    for i, uris in enumerate(rows):
        cols.extend(sorted({index[u] for u in uris if u in index}))
        indptr[i + 1] = len(cols)
    indices = np.asarray(cols, dtype=np.int64)
    data = np.ones(indices.size, dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


def _lookup(keys: IntArray, values: FloatArray, query: IntArray) -> FloatArray:
    """Value of each query key in a sorted key array (0 where absent or the query is -1)."""
    if keys.size == 0:
        return np.zeros(query.shape, dtype=np.float32)
    pos = np.clip(np.searchsorted(keys, query), 0, keys.size - 1)
    hit = (keys[pos] == query) & (query >= 0)
    return np.where(hit, values[pos], 0.0).astype(np.float32)


def _prefix_table(pairs: Sequence[tuple[str | None, float]]) -> tuple[tuple[IntArray, ...], tuple[FloatArray, ...]]:
    """Per ISCO depth, sorted unique prefixes with the max weight among the codes sharing them."""
    keys_out: list[IntArray] = []
    weights_out: list[FloatArray] = []
    for depth_pos in range(len(ISCO_DEPTHS)):
        table: dict[int, float] = {}
        for code, weight in pairs:
            prefix = _isco_prefixes(code)[depth_pos]
            if prefix >= 0:
                table[prefix] = max(table.get(prefix, 0.0), weight)
        keys = np.array(sorted(table), dtype=np.int64)
        keys_out.append(keys)
        weights_out.append(np.array([table[k] for k in keys], dtype=np.float32))
    return tuple(keys_out), tuple(weights_out)


# -- the featurizer -------------------------------------------------------------------------------------------------
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
        self._item_cache: OrderedDict[tuple[int, ...], tuple[tuple[Opportunity, ...], EncodedItems]] = OrderedDict()
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
        cache: OrderedDict[tuple[int, ...], tuple[tuple[Opportunity, ...], EncodedItems]] | None
        cache = getattr(self, "_item_cache", None)
        if cache is None:
            cache = OrderedDict()
            self._item_cache = cache
        hit = cache.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], ops, strict=True)):
            cache.move_to_end(key)
            return hit[1]
        enc = self._encode_items(ops)
        cache[key] = (ops, enc)  # keep the objects alive so their ids stay unique
        while len(cache) > 4:
            cache.popitem(last=False)
        return enc

    def _encode_items(self, ops: tuple[Opportunity, ...]) -> EncodedItems:
        tax = self._tax()
        n_skills = len(tax.skill_uris)
        n = len(ops)
        ids = tuple(o.opportunity_id for o in ops)
        min_lang = np.zeros((n, len(LANGS)), dtype=np.int64)
        reached = np.full((n, len(LANGS)), -1, dtype=np.int64)
        for i, o in enumerate(ops):
            for j, lang in enumerate(LANGS):
                if lang in o.min_language:
                    min_lang[i, j] = level_ordinal(o.min_language[lang])
                if lang in o.completion.language_reached:
                    reached[i, j] = level_ordinal(o.completion.language_reached[lang])
        keys: list[int] = []
        ends = np.zeros(n, dtype=np.int64)
        for i, o in enumerate(ops):
            keys.extend(i * _DATE_KEY + d.toordinal() for d in o.intake.dates)
            ends[i] = len(keys)
        municipalities = tuple(sorted({o.municipality for o in ops}))
        mun_pos = {m: i for i, m in enumerate(municipalities)}
        seats = np.array([o.seats for o in ops], dtype=np.float32)
        taken = np.array([o.seats_taken for o in ops], dtype=np.float32)

        def col(values: Sequence[float | int | bool], dtype: Any) -> Any:
            return np.asarray(values, dtype=dtype).reshape(n)

        def isco_of(o: Opportunity) -> str | None:
            return _occupation_isco(o.occupation) or _occupation_isco(o.completion.leads_to)

        return EncodedItems(
            opportunity_ids=ids,
            essential=_skills_csr([o.required_skills.essential for o in ops], tax.skill_index, n_skills),
            optional=_skills_csr([o.required_skills.optional for o in ops], tax.skill_index, n_skills),
            gained=_skills_csr([o.completion.skills_gained for o in ops], tax.skill_index, n_skills),
            isco=np.array([_isco_prefixes(isco_of(o)) for o in ops], dtype=np.int64).reshape(n, len(ISCO_DEPTHS)),
            min_lang=min_lang,
            lang_reached=reached,
            s2=col([o.s2_support for o in ops], bool),
            min_lit=col([LITERACY_LEVELS.index(o.min_literacy) for o in ops], np.int64),
            lit_reached=col(
                [
                    LITERACY_LEVELS.index(o.completion.literacy_reached) if o.completion.literacy_reached else -1
                    for o in ops
                ],
                np.int64,
            ),
            min_digital=col([o.min_digital for o in ops], np.int64),
            digital_reached=col(
                [-1 if o.completion.digital_reached is None else o.completion.digital_reached for o in ops], np.int64
            ),
            min_isced=col([o.min_isced or 0 for o in ops], np.int64),
            isced_reached=col(
                [-1 if o.completion.isced_reached is None else o.completion.isced_reached for o in ops], np.int64
            ),
            needs_recognition=col([o.requires_recognition for o in ops], bool),
            municipalities=municipalities,
            mun=col([mun_pos[o.municipality] for o in ops], np.int64),
            continuous=col([o.intake.continuous for o in ops], bool),
            intake_keys=np.asarray(keys, dtype=np.int64),
            intake_end=ends,
            duration=col([o.duration_weeks for o in ops], np.float32),
            seats_left=seats - taken,
            fill_ratio=np.where(seats > 0, taken / np.maximum(seats, 1.0), 1.0).astype(np.float32),
            support=col([SUPPORT_LEVELS.index(o.support_level) for o in ops], np.int64),
            kind=col([KINDS.index(o.kind) for o in ops], np.int64),
            route=col([ROUTES.index(o.route) if o.route else -1 for o in ops], np.int64),
            pay_subsidy=col([o.pay_subsidy for o in ops], bool),
            te_decision=col([o.needs_te_decision for o in ops], bool),
            hist_rate=self._acceptance_rates(ids),
            history_n=self._history_counts(ids),
            accept_effect=self._item_effects(ids, 0),
            outcome_effect=self._item_effects(ids, 1),
        )

    def encode_client(self, client: ClientProfile) -> EncodedClient:
        """Encode one client (skills weighted by level, occupation prefixes, language ordinals).

        Raises:
            TypeError: ``client`` is not a :class:`ClientProfile` (e.g. audit attributes).
        """
        _check_clients([client])
        tax = self._tax()
        index = tax.skill_index
        weights: dict[int, float] = {}
        for s in client.skills:
            if s.uri in index:
                weights[index[s.uri]] = max(weights.get(index[s.uri], 0.0), s.level / 4.0)
        skill_idx = np.array(sorted(weights), dtype=np.int64)
        goal_missing: set[int] = set()
        for goal in client.goals.target_occupations:
            if goal.esco_uri is not None and tax.has_occupation(goal.esco_uri):
                essential, _ = tax.occupation_skills(goal.esco_uri)
                goal_missing.update(index[u] for u in essential if u in index)
        goal_missing.difference_update(weights)
        priors = [
            (p.occupation.isco, 1.0 - float(np.exp(-(p.years + 0.5) / PRIOR_YEARS_SCALE)))
            for p in client.prior_occupations
        ]
        prior_keys, prior_weights = _prefix_table(priors)
        goal_keys, _ = _prefix_table([(g.isco, 1.0) for g in client.goals.target_occupations])
        fi = client.language("fi")
        return EncodedClient(
            client_id=client.client_id,
            skill_idx=skill_idx,
            skill_weight=np.array([weights[i] for i in skill_idx], dtype=np.float32),
            goal_missing_idx=np.array(sorted(goal_missing), dtype=np.int64),
            prior_keys=prior_keys,
            prior_weights=prior_weights,
            goal_keys=goal_keys,
            lang=np.array([client.language_ordinal(lang) for lang in LANGS], dtype=np.int64),
            fi_uncertain=bool(fi is None or fi.is_uncertain),
            literacy=LITERACY_LEVELS.index(client.literacy),
            digital=client.digital_skills,
            isced=client.highest_isced,
            recognition=max((_RECOGNITION_ORDER[e.recognition] for e in client.education), default=0),
            municipality=client.constraints.municipality,
            max_travel_km=float(client.constraints.max_travel_km),
            support=SUPPORT_LEVELS.index(client.support_need),
            preferred_path=client.goals.preferred_path,
            age=client.age,
        )

    # -- features -----------------------------------------------------------------------------------------------
    def _reference(self, reference_date: date | None) -> date:
        ref = reference_date or self.reference_date
        return ref if ref is not None else date.today()

    def transform_encoded(
        self,
        enc_client: EncodedClient,
        enc_items: EncodedItems,
        item_idx: npt.NDArray[np.integer[Any]],
        reference_date: date | None = None,
    ) -> FloatArray:
        """Feature rows of one client against catalogue positions ``item_idx`` (the serving path).

        Args:
            enc_client: from :meth:`encode_client`.
            enc_items: from :meth:`encode_items`.
            item_idx: positions in the catalogue, one row each (repeats allowed).
            reference_date: overrides the featurizer's reference date.

        Returns:
            float32 array ``(len(item_idx), len(FEATURE_NAMES))`` without NaN or inf.
        """
        if not isinstance(enc_client, EncodedClient) or not isinstance(enc_items, EncodedItems):
            raise FeatureInputError("transform_encoded expects an EncodedClient and EncodedItems")
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        out = np.zeros((idx.size, len(FEATURE_NAMES)), dtype=np.float32)
        if idx.size == 0:
            return out
        if idx.min() < 0 or idx.max() >= len(enc_items):
            raise ValueError("item_idx: position out of range of the encoded catalogue")
        ref = self._reference(reference_date)
        _skill_features(out, enc_client, enc_items, idx, len(self._tax().skill_uris))
        _occupation_features(out, enc_client, enc_items, idx)
        _language_features(out, enc_client, enc_items, idx)
        _education_features(out, enc_client, enc_items, idx)
        _place_time_features(out, enc_client, enc_items, idx, ref, self._tax())
        _support_kind_features(out, enc_client, enc_items, idx)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1e6, neginf=-1e6)
        return out

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
        for start, end in zip(starts, ends, strict=True):  # one loop step per client, not per pair
            rows = order[start:end]
            ci = int(sorted_clients[start])
            ref = X.reference_dates[ci] if X.reference_dates is not None else None
            enc = self.encode_client(X.clients[ci])
            out[rows] = self.transform_encoded(enc, items, X.opp_idx[rows], ref)
        return out

    def first_stage(
        self,
        enc_client: EncodedClient,
        enc_items: EncodedItems,
        item_idx: npt.NDArray[np.integer[Any]],
        k: int,
    ) -> npt.NDArray[np.int64]:
        """Cheap retrieval: the ``k`` best of ``item_idx`` by sparse skill overlap and occupation match.

        The score is ``2·essential coverage + optional coverage + goal-skill gain + goal match (ISCO-2)
        + prior-work match (ISCO-2)``, minus 0.25 per CEFR step of the best-language gap.

        Returns:
            Catalogue positions (a subset of ``item_idx``), best first; ties keep the order of ``item_idx``.
        """
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        if idx.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64)
        n_skills = len(self._tax().skill_uris)
        c = _dense(enc_client.skill_idx, enc_client.skill_weight, n_skills)
        ess = enc_items.essential[idx]
        opt = enc_items.optional[idx]
        ess_n = np.diff(ess.indptr).astype(np.float32)
        opt_n = np.diff(opt.indptr).astype(np.float32)
        score = 2.0 * _safe_div(ess @ c, ess_n) + _safe_div(opt @ c, opt_n)
        g = _dense(enc_client.goal_missing_idx, np.ones(enc_client.goal_missing_idx.size, np.float32), n_skills)
        score += _safe_div(enc_items.gained[idx] @ g, max(float(g.sum()), 1.0))
        score += _lookup(
            enc_client.goal_keys[1], np.ones(enc_client.goal_keys[1].size, np.float32), enc_items.isco[idx, 1]
        )
        score += _lookup(enc_client.prior_keys[1], enc_client.prior_weights[1], enc_items.isco[idx, 1])
        score -= 0.25 * _best_language_gap(enc_client, enc_items, idx)
        order = np.argsort(-score, kind="stable")[:k]
        return idx[order]

    def transform_many_clients(
        self,
        clients: EncodedClientBatch,
        enc_items: EncodedItems,
        item_index: int,
        reference_date: date | None = None,
        rows: npt.NDArray[np.integer[Any]] | None = None,
    ) -> FloatArray:
        """Feature rows of many clients against one catalogue item (equal to ``transform_encoded`` per pair).

        Args:
            clients: from :func:`stack_clients`.
            enc_items: from :meth:`encode_items`.
            item_index: the item's position in ``enc_items``.
            reference_date: overrides the featurizer's reference date.
            rows: which clients of the batch (default all), one feature row each.

        Returns:
            float32 array ``(len(rows), len(FEATURE_NAMES))``.
        """
        if not 0 <= item_index < len(enc_items):
            raise ValueError("item_index: position out of range of the encoded catalogue")
        idx = np.arange(len(clients)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        return many_clients_features(self._tax(), clients, enc_items, item_index, self._reference(reference_date), idx)

    def stack_clients(self, encoded: Sequence[EncodedClient]) -> EncodedClientBatch:
        """Stack encoded clients for :meth:`transform_many_clients`."""
        return stack_clients(encoded, len(self._tax().skill_uris))

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


# -- feature families (private, vectorised over the rows of one client) -------------------------------------------
def _dense(idx: IntArray, values: FloatArray, n: int) -> FloatArray:
    v = np.zeros(n, dtype=np.float32)
    v[idx] = values
    return v


def _safe_div(num: Any, den: Any) -> FloatArray:
    num = np.asarray(num, dtype=np.float32)
    den = np.asarray(den, dtype=np.float32)
    return np.where(den > 0, num / np.maximum(den, 1e-12), 0.0).astype(np.float32)


def _skill_features(out: FloatArray, c: EncodedClient, it: EncodedItems, idx: IntArray, n_skills: int) -> None:
    weighted = _dense(c.skill_idx, c.skill_weight, n_skills)
    present = _dense(c.skill_idx, np.ones(c.skill_idx.size, np.float32), n_skills)
    ess = it.essential[idx]
    opt = it.optional[idx]
    ess_n = np.diff(ess.indptr).astype(np.float32)
    opt_n = np.diff(opt.indptr).astype(np.float32)
    ess_have = ess @ present
    out[:, _COL["ess_cov"]] = _safe_div(ess @ weighted, ess_n)
    out[:, _COL["ess_cov_any"]] = _safe_div(ess_have, ess_n)
    out[:, _COL["ess_missing"]] = ess_n - ess_have
    out[:, _COL["ess_n"]] = ess_n
    out[:, _COL["opt_cov"]] = _safe_div(opt @ weighted, opt_n)
    out[:, _COL["opt_cov_any"]] = _safe_div(opt @ present, opt_n)
    out[:, _COL["opt_n"]] = opt_n
    missing = _dense(c.goal_missing_idx, np.ones(c.goal_missing_idx.size, np.float32), n_skills)
    out[:, _COL["goal_skill_gain"]] = _safe_div(it.gained[idx] @ missing, max(float(missing.sum()), 1.0))


def _occupation_features(out: FloatArray, c: EncodedClient, it: EncodedItems, idx: IntArray) -> None:
    isco = it.isco[idx]
    for pos, depth in enumerate(ISCO_DEPTHS):
        out[:, _COL[f"occ_prior_isco{depth}"]] = _lookup(c.prior_keys[pos], c.prior_weights[pos], isco[:, pos])
        goal_ones = np.ones(c.goal_keys[pos].size, dtype=np.float32)
        out[:, _COL[f"occ_goal_isco{depth}"]] = _lookup(c.goal_keys[pos], goal_ones, isco[:, pos])
    out[:, _COL["has_occupation"]] = isco[:, 0] >= 0


def _language_gaps(c: EncodedClient, it: EncodedItems, idx: IntArray) -> IntArray:
    """Shortfall in CEFR sub-levels per language (S2 support offsets part of it); 0 where not required."""
    need = it.min_lang[idx]
    offset = np.where(it.s2[idx], S2_OFFSET_STEPS, 0)[:, None]
    gap = np.clip(need - c.lang[None, :] - offset, 0, None)
    return np.where(need > 0, gap, 0)


def _best_language_gap(c: EncodedClient, it: EncodedItems, idx: IntArray) -> FloatArray:
    need = it.min_lang[idx]
    gaps = _language_gaps(c, it, idx)
    # Any one required language suffices (working language fi or sv or en), as in the eligibility rules.
    best = np.where(need > 0, gaps, np.iinfo(np.int64).max).min(axis=1)
    return np.where((need > 0).any(axis=1), best, 0).astype(np.float32)


def _language_features(out: FloatArray, c: EncodedClient, it: EncodedItems, idx: IntArray) -> None:
    gaps = _language_gaps(c, it, idx)
    for j, lang in enumerate(LANGS):
        out[:, _COL[f"lang_gap_{lang}"]] = gaps[:, j]
    out[:, _COL["lang_gap_best"]] = _best_language_gap(c, it, idx)
    need = it.min_lang[idx]
    out[:, _COL["lang_required"]] = (need > 0).any(axis=1)
    out[:, _COL["lang_margin_fi"]] = np.where(need[:, 0] > 0, c.lang[0] - need[:, 0], 0)
    reached_fi = it.lang_reached[idx, 0]
    out[:, _COL["lang_gain_fi"]] = np.clip(reached_fi - c.lang[0], 0, None) * (reached_fi >= 0)
    out[:, _COL["client_fi_level"]] = c.lang[0]
    out[:, _COL["lang_fi_uncertain"]] = c.fi_uncertain
    out[:, _COL["s2_support"]] = it.s2[idx]
    out[:, _COL["lit_gap"]] = np.clip(it.min_lit[idx] - c.literacy, 0, None)
    lit_reached = it.lit_reached[idx]
    out[:, _COL["lit_gain"]] = np.clip(lit_reached - c.literacy, 0, None) * (lit_reached >= 0)
    out[:, _COL["digital_gap"]] = np.clip(it.min_digital[idx] - c.digital, 0, None)


def _education_features(out: FloatArray, c: EncodedClient, it: EncodedItems, idx: IntArray) -> None:
    min_isced = it.min_isced[idx]
    out[:, _COL["edu_met"]] = c.isced >= min_isced
    out[:, _COL["edu_gap"]] = np.clip(min_isced - c.isced, 0, None)
    reached = it.isced_reached[idx]
    out[:, _COL["isced_gain"]] = np.clip(reached - c.isced, 0, None) * (reached >= 0)
    needs = it.needs_recognition[idx]
    recognised = c.recognition >= _RECOGNITION_ORDER["recognised"]
    out[:, _COL["recog_required"]] = needs
    out[:, _COL["recog_met"]] = ~needs | recognised
    out[:, _COL["client_recognition"]] = c.recognition / 3.0


def _days_to_start(it: EncodedItems, idx: IntArray, ref: date) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Days from ``ref`` to each item's next intake (0 for continuous admission) and a no-intake-left flag."""
    r = ref.toordinal()
    continuous = it.continuous[idx]
    if it.intake_keys.size:
        # Keys sort by (item, date): the first key at or after (item, ref) is the item's next intake if it
        # still belongs to the item's own run.
        pos = np.searchsorted(it.intake_keys, idx * _DATE_KEY + r)
        has_next = pos < it.intake_end[idx]
        next_ord = it.intake_keys[np.clip(pos, 0, it.intake_keys.size - 1)] - idx * _DATE_KEY
        days = np.where(has_next, next_ord - r, NO_INTAKE_DAYS)
    else:
        has_next = np.zeros(idx.size, dtype=bool)
        days = np.full(idx.size, NO_INTAKE_DAYS)
    days = np.where(continuous, 0.0, days).astype(np.float32)
    return days, ~has_next & ~continuous


def _place_time_features(
    out: FloatArray, c: EncodedClient, it: EncodedItems, idx: IntArray, ref: date, tax: Taxonomy
) -> None:
    dist = it.distances_from(tax, c.municipality)[idx]
    out[:, _COL["dist_km"]] = dist
    out[:, _COL["dist_ratio"]] = dist / max(c.max_travel_km, 1.0)
    days, none_left = _days_to_start(it, idx, ref)
    out[:, _COL["days_to_start"]] = days
    out[:, _COL["no_intake"]] = none_left
    out[:, _COL["continuous"]] = it.continuous[idx]
    out[:, _COL["duration_weeks"]] = it.duration[idx]
    out[:, _COL["seats_left"]] = it.seats_left[idx]
    out[:, _COL["fill_ratio"]] = it.fill_ratio[idx]


def _support_kind_features(out: FloatArray, c: EncodedClient, it: EncodedItems, idx: IntArray) -> None:
    item_support = it.support[idx]
    out[:, _COL["support_need"]] = c.support
    out[:, _COL["item_support"]] = item_support
    out[:, _COL["support_x"]] = c.support * item_support
    out[:, _COL["support_gap"]] = np.clip(c.support - item_support, 0, None)
    kind = it.kind[idx]
    for k, name in enumerate(KINDS):
        out[:, _COL[f"kind_{name}"]] = kind == k
    route = it.route[idx]
    for r, route_name in enumerate(ROUTES):
        out[:, _COL[f"route_{route_name}"]] = route == r
    is_training = kind == KINDS.index("training")
    out[:, _COL["pref_work"]] = c.preferred_path == "work"
    out[:, _COL["pref_education"]] = c.preferred_path == "education"
    if c.preferred_path == "work":
        match = (~is_training).astype(np.float32)
    elif c.preferred_path == "education":
        match = is_training.astype(np.float32)
    else:
        match = np.full(idx.size, 0.5, dtype=np.float32)
    out[:, _COL["path_match"]] = match
    out[:, _COL["pay_subsidy"]] = it.pay_subsidy[idx]
    out[:, _COL["te_decision"]] = it.te_decision[idx]
    out[:, _COL["hist_accept_rate"]] = it.hist_rate[idx]
    out[:, _COL["item_history_n"]] = it.history_n[idx]
    out[:, _COL["item_accept_effect"]] = it.accept_effect[idx]
    out[:, _COL["item_outcome_effect"]] = it.outcome_effect[idx]
    out[:, _COL["age"]] = c.age
    out[:, _COL["client_digital"]] = c.digital
    out[:, _COL["client_literacy"]] = c.literacy
    out[:, _COL["client_isced"]] = c.isced


# -- many clients against one item (coordinators' candidate lists) --------------------------------------------------
@dataclass(frozen=True)
class EncodedClientBatch:
    """Many encoded clients stacked into arrays (build with :func:`stack_clients`; rows follow the input order)."""

    client_ids: tuple[str, ...]
    weighted: sp.csr_matrix  # (n, n_skills) skill level / 4
    present: sp.csr_matrix  # (n, n_skills) 1 where the client has the skill
    goal_missing: sp.csr_matrix  # (n, n_skills) 1 for missing essential skills of goal occupations
    goal_missing_n: FloatArray
    prior: tuple[tuple[IntArray, IntArray, FloatArray], ...]  # per depth: (owner row, prefix key, weight)
    goal: tuple[tuple[IntArray, IntArray], ...]  # per depth: (owner row, prefix key)
    lang: IntArray  # (n, 3)
    fi_uncertain: npt.NDArray[np.bool_]
    literacy: IntArray
    digital: IntArray
    isced: IntArray
    recognition: IntArray
    municipalities: tuple[str, ...]
    mun: IntArray
    max_travel_km: FloatArray
    support: IntArray
    preferred_path: tuple[str, ...]
    age: IntArray

    def __len__(self) -> int:
        return len(self.client_ids)


def _stack_sparse(rows: Sequence[tuple[IntArray, FloatArray]], n_cols: int) -> sp.csr_matrix:
    lengths = np.array([r[0].size for r in rows], dtype=np.int64)
    indptr = np.r_[0, np.cumsum(lengths)]
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))


def _stack_keys(per_client: Sequence[IntArray]) -> tuple[IntArray, IntArray]:
    owner = np.repeat(np.arange(len(per_client), dtype=np.int64), [k.size for k in per_client])
    keys = np.concatenate(per_client).astype(np.int64) if per_client else np.zeros(0, np.int64)
    return owner, keys


def stack_clients(encoded: Sequence[EncodedClient], n_skills: int) -> EncodedClientBatch:
    """Stack encoded clients for :meth:`PairFeaturizer.transform_many_clients` (build once per client pool).

    Args:
        encoded: clients from :meth:`PairFeaturizer.encode_client`.
        n_skills: number of skill columns (``len(taxonomy.skill_uris)``).
    """
    n = len(encoded)
    prior = []
    goal = []
    for pos in range(len(ISCO_DEPTHS)):
        owner, keys = _stack_keys([c.prior_keys[pos] for c in encoded])
        weights = np.concatenate([c.prior_weights[pos] for c in encoded]) if n else np.zeros(0, np.float32)
        prior.append((owner, keys, weights.astype(np.float32)))
        goal.append(_stack_keys([c.goal_keys[pos] for c in encoded]))
    munis = tuple(sorted({c.municipality for c in encoded}))
    mun_pos = {m: i for i, m in enumerate(munis)}
    goal_missing = _stack_sparse(
        [(c.goal_missing_idx, np.ones(c.goal_missing_idx.size, np.float32)) for c in encoded], n_skills
    )
    return EncodedClientBatch(
        client_ids=tuple(c.client_id for c in encoded),
        weighted=_stack_sparse([(c.skill_idx, c.skill_weight) for c in encoded], n_skills),
        present=_stack_sparse([(c.skill_idx, np.ones(c.skill_idx.size, np.float32)) for c in encoded], n_skills),
        goal_missing=goal_missing,
        goal_missing_n=np.diff(goal_missing.indptr).astype(np.float32),
        prior=tuple(prior),
        goal=tuple(goal),
        lang=np.array([c.lang for c in encoded], dtype=np.int64).reshape(n, len(LANGS)),
        fi_uncertain=np.array([c.fi_uncertain for c in encoded], dtype=bool),
        literacy=np.array([c.literacy for c in encoded], dtype=np.int64),
        digital=np.array([c.digital for c in encoded], dtype=np.int64),
        isced=np.array([c.isced for c in encoded], dtype=np.int64),
        recognition=np.array([c.recognition for c in encoded], dtype=np.int64),
        municipalities=munis,
        mun=np.array([mun_pos[c.municipality] for c in encoded], dtype=np.int64),
        max_travel_km=np.array([c.max_travel_km for c in encoded], dtype=np.float32),
        support=np.array([c.support for c in encoded], dtype=np.int64),
        preferred_path=tuple(c.preferred_path for c in encoded),
        age=np.array([c.age for c in encoded], dtype=np.int64),
    )


def _row_indicator(matrix: sp.csr_matrix, row: int, n_cols: int) -> tuple[FloatArray, float]:
    """Dense 0/1 vector of one sparse row's columns, and how many there are."""
    cols = matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]
    v = np.zeros(n_cols, dtype=np.float32)
    v[cols] = 1.0
    return v, float(cols.size)


def _key_match(owner: IntArray, keys: IntArray, weights: FloatArray | None, query: int, n: int) -> FloatArray:
    out = np.zeros(n, dtype=np.float32)
    if query < 0 or keys.size == 0:
        return out
    hit = keys == query
    out[owner[hit]] = 1.0 if weights is None else weights[hit]
    return out


def many_clients_features(
    tax: Taxonomy, cb: EncodedClientBatch, it: EncodedItems, item: int, ref: date, rows: IntArray
) -> FloatArray:
    """Feature rows of clients ``rows`` of a batch against catalogue position ``item`` (see ``transform_encoded``)."""
    n = rows.size
    out = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n == 0:
        return out
    n_skills = cb.weighted.shape[1]
    one = np.array([item], dtype=np.int64)
    weighted, present, missing = cb.weighted[rows], cb.present[rows], cb.goal_missing[rows]
    ess, ess_n = _row_indicator(it.essential, item, n_skills)
    opt, opt_n = _row_indicator(it.optional, item, n_skills)
    gained, _ = _row_indicator(it.gained, item, n_skills)
    ess_have = present @ ess
    out[:, _COL["ess_cov"]] = _safe_div(weighted @ ess, ess_n)
    out[:, _COL["ess_cov_any"]] = _safe_div(ess_have, ess_n)
    out[:, _COL["ess_missing"]] = ess_n - ess_have
    out[:, _COL["ess_n"]] = ess_n
    out[:, _COL["opt_cov"]] = _safe_div(weighted @ opt, opt_n)
    out[:, _COL["opt_cov_any"]] = _safe_div(present @ opt, opt_n)
    out[:, _COL["opt_n"]] = opt_n
    out[:, _COL["goal_skill_gain"]] = _safe_div(missing @ gained, np.maximum(cb.goal_missing_n[rows], 1.0))
    isco = it.isco[item]
    n_all = len(cb)
    for pos, depth in enumerate(ISCO_DEPTHS):
        owner, keys, w = cb.prior[pos]
        out[:, _COL[f"occ_prior_isco{depth}"]] = _key_match(owner, keys, w, int(isco[pos]), n_all)[rows]
        g_owner, g_keys = cb.goal[pos]
        out[:, _COL[f"occ_goal_isco{depth}"]] = _key_match(g_owner, g_keys, None, int(isco[pos]), n_all)[rows]
    out[:, _COL["has_occupation"]] = isco[0] >= 0
    lang = cb.lang[rows]
    need = it.min_lang[item][None, :]
    offset = S2_OFFSET_STEPS if it.s2[item] else 0
    gaps = np.where(need > 0, np.clip(need - lang - offset, 0, None), 0)
    for j, code in enumerate(LANGS):
        out[:, _COL[f"lang_gap_{code}"]] = gaps[:, j]
    required = need > 0
    best = np.where(required, gaps, np.iinfo(np.int64).max).min(axis=1)
    out[:, _COL["lang_gap_best"]] = np.where(required.any(), best, 0)
    out[:, _COL["lang_required"]] = required.any()
    out[:, _COL["lang_margin_fi"]] = lang[:, 0] - need[0, 0] if need[0, 0] > 0 else 0
    reached_fi = it.lang_reached[item, 0]
    out[:, _COL["lang_gain_fi"]] = np.clip(reached_fi - lang[:, 0], 0, None) * (reached_fi >= 0)
    out[:, _COL["client_fi_level"]] = lang[:, 0]
    out[:, _COL["lang_fi_uncertain"]] = cb.fi_uncertain[rows]
    out[:, _COL["s2_support"]] = it.s2[item]
    literacy, isced = cb.literacy[rows], cb.isced[rows]
    out[:, _COL["lit_gap"]] = np.clip(it.min_lit[item] - literacy, 0, None)
    lit_reached = it.lit_reached[item]
    out[:, _COL["lit_gain"]] = np.clip(lit_reached - literacy, 0, None) * (lit_reached >= 0)
    out[:, _COL["digital_gap"]] = np.clip(it.min_digital[item] - cb.digital[rows], 0, None)
    min_isced = it.min_isced[item]
    out[:, _COL["edu_met"]] = isced >= min_isced
    out[:, _COL["edu_gap"]] = np.clip(min_isced - isced, 0, None)
    reached = it.isced_reached[item]
    out[:, _COL["isced_gain"]] = np.clip(reached - isced, 0, None) * (reached >= 0)
    needs = bool(it.needs_recognition[item])
    recognition = cb.recognition[rows]
    out[:, _COL["recog_required"]] = needs
    out[:, _COL["recog_met"]] = (not needs) | (recognition >= _RECOGNITION_ORDER["recognised"])
    out[:, _COL["client_recognition"]] = recognition / 3.0
    item_mun = it.municipalities[int(it.mun[item])]
    per_mun = tax.distance_matrix(list(cb.municipalities), [item_mun])[:, 0].astype(np.float32)
    dist = per_mun[cb.mun[rows]]
    out[:, _COL["dist_km"]] = dist
    out[:, _COL["dist_ratio"]] = dist / np.maximum(cb.max_travel_km[rows], 1.0)
    days, none_left = _days_to_start(it, one, ref)
    out[:, _COL["days_to_start"]] = days[0]
    out[:, _COL["no_intake"]] = none_left[0]
    out[:, _COL["continuous"]] = it.continuous[item]
    out[:, _COL["duration_weeks"]] = it.duration[item]
    out[:, _COL["seats_left"]] = it.seats_left[item]
    out[:, _COL["fill_ratio"]] = it.fill_ratio[item]
    support = cb.support[rows]
    item_support = it.support[item]
    out[:, _COL["support_need"]] = support
    out[:, _COL["item_support"]] = item_support
    out[:, _COL["support_x"]] = support * item_support
    out[:, _COL["support_gap"]] = np.clip(support - item_support, 0, None)
    kind = it.kind[item]
    for k, name in enumerate(KINDS):
        out[:, _COL[f"kind_{name}"]] = kind == k
    for r, route_name in enumerate(ROUTES):
        out[:, _COL[f"route_{route_name}"]] = it.route[item] == r
    is_training = kind == KINDS.index("training")
    paths = np.array(cb.preferred_path, dtype=object)[rows]
    work, education = paths == "work", paths == "education"
    out[:, _COL["pref_work"]] = work
    out[:, _COL["pref_education"]] = education
    out[:, _COL["path_match"]] = np.where(work, float(not is_training), np.where(education, float(is_training), 0.5))
    out[:, _COL["pay_subsidy"]] = it.pay_subsidy[item]
    out[:, _COL["te_decision"]] = it.te_decision[item]
    out[:, _COL["hist_accept_rate"]] = it.hist_rate[item]
    out[:, _COL["item_history_n"]] = it.history_n[item]
    out[:, _COL["item_accept_effect"]] = it.accept_effect[item]
    out[:, _COL["item_outcome_effect"]] = it.outcome_effect[item]
    out[:, _COL["age"]] = cb.age[rows]
    out[:, _COL["client_digital"]] = cb.digital[rows]
    out[:, _COL["client_literacy"]] = literacy
    out[:, _COL["client_isced"]] = isced
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1e6, neginf=-1e6)
    return out


def many_clients_first_stage(cb: EncodedClientBatch, it: EncodedItems, item: int, rows: IntArray) -> FloatArray:
    """The :meth:`PairFeaturizer.first_stage` score of clients ``rows`` against one item (higher = better)."""
    n_skills = cb.weighted.shape[1]
    weighted = cb.weighted[rows]
    ess, ess_n = _row_indicator(it.essential, item, n_skills)
    opt, opt_n = _row_indicator(it.optional, item, n_skills)
    gained, _ = _row_indicator(it.gained, item, n_skills)
    score = 2.0 * _safe_div(weighted @ ess, ess_n) + _safe_div(weighted @ opt, opt_n)
    score += _safe_div(cb.goal_missing[rows] @ gained, np.maximum(cb.goal_missing_n[rows], 1.0))
    code = int(it.isco[item, 1])
    owner, keys = cb.goal[1]
    score += _key_match(owner, keys, None, code, len(cb))[rows]
    owner, keys, w = cb.prior[1]
    score += _key_match(owner, keys, w, code, len(cb))[rows]
    need = it.min_lang[item][None, :]
    offset = S2_OFFSET_STEPS if it.s2[item] else 0
    gaps = np.where(need > 0, np.clip(need - cb.lang[rows] - offset, 0, None), 0)
    if (need > 0).any():
        score -= 0.25 * np.where(need > 0, gaps, np.iinfo(np.int64).max).min(axis=1).astype(np.float32)
    return np.asarray(score, dtype=np.float32)
