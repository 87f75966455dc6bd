"""Clients and catalogues in array form: what the feature families and the first stage read.

A catalogue is encoded once (:func:`encode_items`); clients are encoded into one :class:`EncodedClients` batch
(:func:`encode_clients`), a single client being a batch of one. Skills are sparse CSR rows over
``taxonomy.skill_index``; ISCO prefixes of prior and goal occupations are per-depth (owner, key) tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from features.errors import FeatureInputError
from features.language import level_ordinal
from features.pairs.names import DATE_KEY, ISCO_DEPTHS, LANGS, PRIOR_YEARS_SCALE, RECOGNITION_ORDER
from features.records import (
    KINDS,
    LITERACY_LEVELS,
    ROUTES,
    SUPPORT_LEVELS,
    ClientProfile,
    OccupationRef,
    Opportunity,
)
from features.taxonomy import Taxonomy

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
KEY_SPACE = 1 << 20
"""Per-depth prefix keys are below this, so ``row * KEY_SPACE + key`` orders (client, key) pairs."""


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


class ItemHistory(Protocol):
    """What item encoding needs from a fitted featurizer: its per-item history columns."""

    def rates(self, ids: Sequence[str]) -> FloatArray:
        """Smoothed acceptance rate per item."""
        ...  # pragma: no cover

    def counts(self, ids: Sequence[str]) -> FloatArray:
        """log(1 + times shown) per item."""
        ...  # pragma: no cover

    def effects(self, ids: Sequence[str], which: int) -> FloatArray:
        """Acceptance (0) or outcome (1) effect per item."""
        ...  # pragma: no cover


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

    def municipality_distances(self, taxonomy: Taxonomy, municipalities: Sequence[str]) -> FloatArray:
        """Km from each of ``municipalities`` to each of :attr:`municipalities` (rows cached per municipality)."""
        rows = []
        for m in municipalities:
            row = self._dist_cache.get(m)
            if row is None:
                row = taxonomy.distance_matrix([m], list(self.municipalities))[0].astype(np.float32)
                self._dist_cache[m] = row
            rows.append(row)
        return np.stack(rows) if rows else np.zeros((0, len(self.municipalities)), dtype=np.float32)


@dataclass(frozen=True)
class EncodedClients:
    """Clients in array form (build with :func:`encode_clients`; rows follow the input order).

    One client is a batch of one: every feature family and the first stage read this one form. Skills are kept
    as raw CSR parts (row pointers, skill positions, weights); the scipy matrices many-client products need are
    built on first use.
    """

    client_ids: tuple[str, ...]
    n_skills: int
    skill_indptr: IntArray  # (n + 1,) row pointers into skill_idx / skill_weight
    skill_idx: IntArray  # skill positions, ascending within a client
    skill_weight: FloatArray  # skill level / 4
    goal_indptr: IntArray  # (n + 1,) row pointers into goal_idx
    goal_idx: IntArray  # essential skills of goal occupations the client lacks, ascending within a client
    goal_missing_n: FloatArray
    prior: tuple[tuple[IntArray, FloatArray], ...]  # per depth: sorted row * KEY_SPACE + prefix, experience weight
    goal: tuple[IntArray, ...]  # per depth: sorted row * KEY_SPACE + prefix
    lang: IntArray  # (n, 3) ordinals fi, sv, en
    fi_uncertain: npt.NDArray[np.bool_]
    literacy: IntArray
    digital: IntArray
    isced: IntArray
    recognition: IntArray
    municipalities: tuple[str, ...]
    mun: IntArray
    max_travel_km: FloatArray
    support: IntArray
    preferred_path: npt.NDArray[np.str_]
    age: IntArray

    def __len__(self) -> int:
        return len(self.client_ids)

    def skill_row(self, part: str, row: int) -> FloatArray:
        """One client's skills as a dense vector: ``weighted`` (level / 4), ``present`` (1) or ``goal`` (1)."""
        dense = np.zeros(self.n_skills, dtype=np.float32)
        if part == "goal":
            dense[self.goal_idx[self.goal_indptr[row] : self.goal_indptr[row + 1]]] = 1.0
            return dense
        lo, hi = self.skill_indptr[row], self.skill_indptr[row + 1]
        dense[self.skill_idx[lo:hi]] = self.skill_weight[lo:hi] if part == "weighted" else 1.0
        return dense

    def skill_matrix(self, part: str) -> sp.csr_matrix:
        """All clients' skills as a sparse ``(n, n_skills)`` matrix (built once per part)."""
        cache: dict[str, sp.csr_matrix] = self.__dict__.setdefault("_matrices", {})
        if part not in cache:
            if part == "goal":
                data = np.ones(self.goal_idx.size, dtype=np.float32)
                parts = (data, self.goal_idx, self.goal_indptr)
            else:
                weights = self.skill_weight if part == "weighted" else np.ones(self.skill_idx.size, np.float32)
                parts = (weights, self.skill_idx, self.skill_indptr)
            cache[part] = sp.csr_matrix(parts, shape=(len(self), self.n_skills))
        return cache[part]


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


def encode_items(tax: Taxonomy, ops: Sequence[Opportunity], history: ItemHistory) -> EncodedItems:
    """Encode a catalogue: skills as sparse rows over ``tax.skill_index``, every other attribute a column."""
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
        keys.extend(i * DATE_KEY + d.toordinal() for d in o.intake.dates)
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
        hist_rate=history.rates(ids),
        history_n=history.counts(ids),
        accept_effect=history.effects(ids, 0),
        outcome_effect=history.effects(ids, 1),
    )


@dataclass(frozen=True)
class _Client:
    """One client's encoded parts before stacking."""

    client_id: str
    skill_idx: IntArray
    skill_weight: FloatArray
    goal_missing_idx: IntArray
    prior_keys: tuple[IntArray, ...]
    prior_weights: tuple[FloatArray, ...]
    goal_keys: tuple[IntArray, ...]
    lang: IntArray
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


def _encode_one(tax: Taxonomy, client: ClientProfile) -> _Client:
    """One client's skills weighted by level, occupation prefixes and language ordinals."""
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
        (p.occupation.isco, 1.0 - float(np.exp(-(p.years + 0.5) / PRIOR_YEARS_SCALE))) for p in client.prior_occupations
    ]
    prior_keys, prior_weights = _prefix_table(priors)
    goal_keys, _ = _prefix_table([(g.isco, 1.0) for g in client.goals.target_occupations])
    fi = client.language("fi")
    return _Client(
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
        recognition=max((RECOGNITION_ORDER[e.recognition] for e in client.education), default=0),
        municipality=client.constraints.municipality,
        max_travel_km=float(client.constraints.max_travel_km),
        support=SUPPORT_LEVELS.index(client.support_need),
        preferred_path=client.goals.preferred_path,
        age=client.age,
    )


def _stack_rows(rows: Sequence[IntArray]) -> tuple[IntArray, IntArray]:
    """Row pointers and concatenated entries of per-client index arrays."""
    indptr = np.r_[0, np.cumsum([r.size for r in rows])].astype(np.int64)
    values = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    return indptr, values


def _stack_keys(per_client: Sequence[IntArray]) -> IntArray:
    """``row * KEY_SPACE + key`` of every client's sorted keys: sorted, since rows and keys ascend."""
    owner = np.repeat(np.arange(len(per_client), dtype=np.int64), [k.size for k in per_client])
    keys = np.concatenate(per_client).astype(np.int64) if per_client else np.zeros(0, np.int64)
    return np.asarray(owner * KEY_SPACE + keys, dtype=np.int64)


def _stack(parts: Sequence[_Client], n_skills: int) -> EncodedClients:
    n = len(parts)
    prior = tuple(
        (
            _stack_keys([c.prior_keys[pos] for c in parts]),
            (np.concatenate([c.prior_weights[pos] for c in parts]) if n else np.zeros(0)).astype(np.float32),
        )
        for pos in range(len(ISCO_DEPTHS))
    )
    goal = tuple(_stack_keys([c.goal_keys[pos] for c in parts]) for pos in range(len(ISCO_DEPTHS)))
    munis = tuple(sorted({c.municipality for c in parts}))
    mun_pos = {m: i for i, m in enumerate(munis)}
    skill_indptr, skill_idx = _stack_rows([c.skill_idx for c in parts])
    goal_indptr, goal_idx = _stack_rows([c.goal_missing_idx for c in parts])
    return EncodedClients(
        client_ids=tuple(c.client_id for c in parts),
        n_skills=n_skills,
        skill_indptr=skill_indptr,
        skill_idx=skill_idx,
        skill_weight=(np.concatenate([c.skill_weight for c in parts]) if n else np.zeros(0)).astype(np.float32),
        goal_indptr=goal_indptr,
        goal_idx=goal_idx,
        goal_missing_n=np.diff(goal_indptr).astype(np.float32),
        prior=prior,
        goal=goal,
        lang=np.array([c.lang for c in parts], dtype=np.int64).reshape(n, len(LANGS)),
        fi_uncertain=np.array([c.fi_uncertain for c in parts], dtype=bool),
        literacy=np.array([c.literacy for c in parts], dtype=np.int64),
        digital=np.array([c.digital for c in parts], dtype=np.int64),
        isced=np.array([c.isced for c in parts], dtype=np.int64),
        recognition=np.array([c.recognition for c in parts], dtype=np.int64),
        municipalities=munis,
        mun=np.array([mun_pos[c.municipality] for c in parts], dtype=np.int64),
        max_travel_km=np.array([c.max_travel_km for c in parts], dtype=np.float32),
        support=np.array([c.support for c in parts], dtype=np.int64),
        preferred_path=np.array([c.preferred_path for c in parts], dtype=str).reshape(n),
        age=np.array([c.age for c in parts], dtype=np.int64),
    )


def encode_clients(tax: Taxonomy, clients: Sequence[ClientProfile]) -> EncodedClients:
    """Encode clients into one batch (a single client is a batch of one).

    Raises:
        FeatureInputError: an element is not a :class:`ClientProfile` (e.g. audit attributes).
    """
    _check_clients(clients)
    return _stack([_encode_one(tax, c) for c in clients], len(tax.skill_uris))
