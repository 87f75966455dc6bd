"""Hard eligibility rules per centre and per item, vectorised over a catalogue, with a reason for every exclusion.

Rules run before anything is ranked (domain.md §9.2). A rule that fails excludes the item; the first failing
rule, in the order of :data:`REASONS`, is the reason reported. Soft mismatches (a language gap of one or two
sub-levels, a missing skill) are not exclusions: the ranker weighs them and the explanation names the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.centres import CENTRES, Centre
from features.language import level_ordinal
from features.records import KINDS, LITERACY_LEVELS, ROUTES, ClientProfile, Opportunity
from features.taxonomy import Taxonomy, default_taxonomy

# Reason codes; index 0 means eligible. Order = the order in which rules are checked.
REASONS: Final[tuple[str, ...]] = (
    "eligible",
    "other_centre",
    "centre_min_age",
    "item_age",
    "client_type",
    "work_permit",
    "integration_period",
    "centre_language_gate",
    "language_gate",
    "literacy_gate",
    "education_prerequisite",
    "recognition_missing",
    "no_seats",
    "no_intake",
    "too_far",
)
REASON_INDEX: Final[dict[str, int]] = {r: i for i, r in enumerate(REASONS)}

# A language shortfall of up to this many sub-levels (after S2 support) is a gap to explain, not a gate:
# the counsellor can pair the item with a language step. Beyond it, the item is out of reach for now.
MAX_SOFT_LANGUAGE_STEPS: Final = 2
# S2 support offsets this many sub-levels of the requirement (domain.md: S2-supported degrees and work trials).
S2_OFFSET_STEPS: Final = 2
_LANGS: Final = ("fi", "sv", "en")
_NOT_REQUIRED: Final = 32_000
"""Passing level of a language an item does not require (above every client level)."""


@dataclass(frozen=True)
class Exclusion:
    """Why one item is excluded for one client."""

    opportunity_id: str
    reason: str


@dataclass(frozen=True)
class EligibilityResult:
    """Eligibility of every catalogue item for one client.

    Attributes:
        reason_codes: int8 per catalogue item, 0 = eligible, else an index into :data:`REASONS`.
        opportunity_ids: catalogue ids in the evaluator's order.
    """

    reason_codes: npt.NDArray[np.int8]
    opportunity_ids: tuple[str, ...]

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        """True where the item is eligible."""
        return self.reason_codes == 0

    @property
    def eligible_indices(self) -> npt.NDArray[np.intp]:
        """Catalogue positions of the eligible items."""
        return np.flatnonzero(self.reason_codes == 0)

    def excluded_counts(self) -> dict[str, int]:
        """Number of excluded items per reason (reasons with none are left out)."""
        counts = np.bincount(self.reason_codes.astype(np.intp), minlength=len(REASONS))
        return {REASONS[i]: int(c) for i, c in enumerate(counts) if i > 0 and c > 0}

    def reason_for(self, opportunity_id: str) -> str | None:
        """The exclusion reason of one item, ``None`` when it is eligible or not in the catalogue."""
        try:
            pos = self.opportunity_ids.index(opportunity_id)
        except ValueError:
            return None
        code = int(self.reason_codes[pos])
        return None if code == 0 else REASONS[code]

    def exclusions(self) -> list[Exclusion]:
        """Every excluded item with its reason."""
        return [Exclusion(self.opportunity_ids[i], REASONS[int(c)]) for i, c in enumerate(self.reason_codes) if c != 0]


@dataclass(frozen=True)
class ClientTable:
    """Many clients in array form for :meth:`EligibilityEvaluator.evaluate_clients` (build with :meth:`build`)."""

    client_ids: tuple[str, ...]
    centre: npt.NDArray[np.int16]
    below_centre_age: npt.NDArray[np.bool_]
    age: npt.NDArray[np.int16]
    is_te: npt.NDArray[np.bool_]
    type_allowed: npt.NDArray[np.bool_]
    work_permit: npt.NDArray[np.bool_]
    in_integration: npt.NDArray[np.bool_]
    below_group_finnish: npt.NDArray[np.bool_]
    lang: npt.NDArray[np.int16]
    literacy: npt.NDArray[np.int8]
    isced: npt.NDArray[np.int8]
    recognised: npt.NDArray[np.bool_]
    municipalities: tuple[str, ...]
    mun: npt.NDArray[np.int32]
    max_travel_km: npt.NDArray[np.float32]

    @classmethod
    def build(cls, clients: Sequence[ClientProfile], centres: dict[str, Centre] | None = None) -> ClientTable:
        """Encode clients once (e.g. a centre's consenting pool)."""
        centres = centres or CENTRES
        ids = list(centres)
        munis = tuple(sorted({c.constraints.municipality for c in clients}))
        mun_pos = {m: i for i, m in enumerate(munis)}

        def below_group(c: ClientProfile) -> bool:
            rules = centres[c.centre].rules
            if rules.group_services_min_finnish is None or not rules.group_routes:
                return False
            return c.language_ordinal("fi") < level_ordinal(rules.group_services_min_finnish)

        return cls(
            client_ids=tuple(c.client_id for c in clients),
            centre=np.array([ids.index(c.centre) for c in clients], dtype=np.int16),
            below_centre_age=np.array([c.age < centres[c.centre].rules.min_age for c in clients], dtype=bool),
            age=np.array([c.age for c in clients], dtype=np.int16),
            is_te=np.array([c.status.client_type == "te" for c in clients], dtype=bool),
            type_allowed=np.array(
                [c.status.client_type in centres[c.centre].rules.client_types for c in clients], dtype=bool
            ),
            work_permit=np.array([c.status.work_permit for c in clients], dtype=bool),
            in_integration=np.array([c.status.in_integration_period for c in clients], dtype=bool),
            below_group_finnish=np.array([below_group(c) for c in clients], dtype=bool),
            lang=np.array([[c.language_ordinal(lang) for lang in _LANGS] for c in clients], dtype=np.int16).reshape(
                len(clients), len(_LANGS)
            ),
            literacy=np.array([LITERACY_LEVELS.index(c.literacy) for c in clients], dtype=np.int8),
            isced=np.array([c.highest_isced for c in clients], dtype=np.int8),
            recognised=np.array(
                [any(e.recognition in ("recognised", "not_needed") for e in c.education) for c in clients], dtype=bool
            ),
            municipalities=munis,
            mun=np.array([mun_pos[c.constraints.municipality] for c in clients], dtype=np.int32),
            max_travel_km=np.array([c.constraints.max_travel_km for c in clients], dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.client_ids)


class EligibilityEvaluator:
    """Applies centre and item rules to a whole catalogue at once (numpy, no per-item Python loop)."""

    def __init__(
        self,
        opportunities: Sequence[Opportunity],
        *,
        taxonomy: Taxonomy | None = None,
        centres: dict[str, Centre] | None = None,
    ) -> None:
        self.taxonomy = taxonomy or default_taxonomy()
        self.centres = centres or CENTRES
        self.opportunities = tuple(opportunities)
        self.opportunity_ids = tuple(o.opportunity_id for o in self.opportunities)
        self.position = {oid: i for i, oid in enumerate(self.opportunity_ids)}
        n = len(self.opportunities)
        ops = self.opportunities
        centre_ids = list(self.centres)
        self._centre = np.array([centre_ids.index(o.centre) for o in ops], dtype=np.int16)
        self._kind = np.array([KINDS.index(o.kind) for o in ops], dtype=np.int8)
        self._route = np.array([ROUTES.index(o.route) if o.route else -1 for o in ops], dtype=np.int8)
        self._min_age = np.array([o.rules.min_age or 0 for o in ops], dtype=np.int16)
        self._max_age = np.array([o.rules.max_age or 200 for o in ops], dtype=np.int16)
        self._allows_te = np.array(["te" in o.rules.client_types for o in ops], dtype=bool)
        self._allows_mun = np.array(["municipal" in o.rules.client_types for o in ops], dtype=bool)
        self._needs_permit = np.array([o.rules.requires_work_permit or o.kind != "training" for o in ops], dtype=bool)
        self._integration_only = np.array([o.rules.integration_period_only for o in ops], dtype=bool)
        self._s2 = np.array([o.s2_support for o in ops], dtype=bool)
        self._min_lang = np.zeros((n, len(_LANGS)), dtype=np.int16)
        for i, o in enumerate(ops):
            for j, lang in enumerate(_LANGS):
                if lang in o.min_language:
                    self._min_lang[i, j] = level_ordinal(o.min_language[lang])
        self._min_lit = np.array([LITERACY_LEVELS.index(o.min_literacy) for o in ops], dtype=np.int8)
        self._min_isced = np.array([o.min_isced or 0 for o in ops], dtype=np.int8)
        self._needs_recognition = np.array([o.requires_recognition for o in ops], dtype=bool)
        self._seats_left = np.array([o.seats_left for o in ops], dtype=np.int32)
        self._continuous = np.array([o.intake.continuous for o in ops], dtype=bool)
        last = [max(o.intake.dates).toordinal() if o.intake.dates else 0 for o in ops]
        self._last_intake = np.array(last, dtype=np.int64)
        self.municipalities = tuple(sorted({o.municipality for o in ops}))
        mun_pos = {m: i for i, m in enumerate(self.municipalities)}
        self._mun = np.array([mun_pos[o.municipality] for o in ops], dtype=np.int32)
        self._dist_cache: dict[str, npt.NDArray[np.float32]] = {}
        # Serving fast path: the items of each centre (other centres' items fail the first rule), and per
        # language the lowest client level that passes the soft gate (required levels only; -1 = not required).
        self._by_centre = [np.flatnonzero(self._centre == c).astype(np.intp) for c in range(len(centre_ids))]
        offsets = np.where(self._s2, S2_OFFSET_STEPS, 0).astype(np.int16)[:, None]
        passing = np.where(self._min_lang > 0, self._min_lang - offsets - MAX_SOFT_LANGUAGE_STEPS, _NOT_REQUIRED)
        self._lang_pass = np.ascontiguousarray(passing.T.astype(np.int16))
        self._lang_free: npt.NDArray[np.bool_] = np.asarray(~(self._min_lang > 0).any(axis=1), dtype=np.bool_)
        # Per centre, the items whose route the centre runs as group services (its Finnish gate applies to them).
        self._group_route = np.zeros((len(centre_ids), n), dtype=bool)
        for c, cid in enumerate(centre_ids):
            group_routes = self.centres[cid].rules.group_routes or ()
            if self.centres[cid].rules.group_services_min_finnish is not None and group_routes:
                self._group_route[c] = np.isin(self._route, [ROUTES.index(r) for r in group_routes])

    def __len__(self) -> int:
        return len(self.opportunities)

    def items_of_centre(self, centre_id: str) -> npt.NDArray[np.intp]:
        """Catalogue positions of a centre's items (ascending); other centres' items fail the first rule."""
        return self._by_centre[list(self.centres).index(centre_id)]

    def distances_from(self, municipality: str) -> npt.NDArray[np.float32]:
        """Travel distance (km) from a municipality to every catalogue item."""
        return self._distance_row(municipality)[self._mun]

    def _distance_row(self, municipality: str) -> npt.NDArray[np.float32]:
        """Distance (km) from a municipality to each of :attr:`municipalities` (cached per municipality)."""
        row = self._dist_cache.get(municipality)
        if row is None:
            row = self.taxonomy.distance_matrix([municipality], list(self.municipalities))[0]
            self._dist_cache[municipality] = row
        return row

    def evaluate(self, client: ClientProfile, on: date) -> EligibilityResult:
        """Evaluate every item of the catalogue for one client on a given day."""
        codes = self.reason_codes_at(client, on)
        return EligibilityResult(reason_codes=codes, opportunity_ids=self.opportunity_ids)

    def reason_codes_at(
        self, client: ClientProfile, on: date, positions: npt.NDArray[np.integer[Any]] | None = None
    ) -> npt.NDArray[np.int8]:
        """Reason codes (0 = eligible) of the items at ``positions`` (default: the whole catalogue), in that order.

        Args:
            client: the client.
            on: the day of evaluation.
            positions: catalogue positions to evaluate; a subset costs in proportion to its size.
        """
        return self.reason_codes_of([client], [on], positions)[0]

    def reason_codes_of(
        self,
        clients: Sequence[ClientProfile],
        days: Sequence[date],
        positions: npt.NDArray[np.integer[Any]] | None = None,
    ) -> npt.NDArray[np.int8]:
        """Reason codes ``(len(clients), len(positions))`` of several client states, each on its own day.

        States of one centre (a path planner's frontier) take one pass over the arrays instead of one each.

        Args:
            clients: the clients (or one client's states).
            days: the day of evaluation of each.
            positions: catalogue positions to evaluate (default: the whole catalogue).
        """
        if not all(isinstance(c, ClientProfile) for c in clients):
            raise TypeError("EligibilityEvaluator.evaluate accepts a ClientProfile only")
        table = ClientTable.build(clients, self.centres)
        on = np.array([d.toordinal() for d in days], dtype=np.int64)
        centres = {c.centre for c in clients}
        if positions is None and len(centres) == 1 and clients[0].centre in self.centres:
            # Only the items of the clients' centre need the other rules (~1/5 of a nationwide catalogue).
            own = self._by_centre[list(self.centres).index(clients[0].centre)]
            all_codes = np.full((len(clients), len(self.opportunities)), REASON_INDEX["other_centre"], dtype=np.int8)
            all_codes[:, own] = self.reason_codes(table, own, on)
            return all_codes
        return self.reason_codes(table, positions, on)

    def evaluate_clients(self, table: ClientTable, item: int, on: date) -> npt.NDArray[np.int8]:
        """Reason codes of one catalogue item for many clients (same rules and order as :meth:`evaluate`).

        Args:
            table: the clients, from :meth:`ClientTable.build` (with the same centres).
            item: the item's position in this evaluator's catalogue.
            on: the day of evaluation.

        Returns:
            int8 per client, 0 = eligible, else an index into :data:`REASONS`.
        """
        return self.reason_codes(table, np.array([item], dtype=np.intp), on)[:, 0]

    def reason_codes(
        self,
        table: ClientTable,
        positions: npt.NDArray[np.integer[Any]] | None,
        on: date | npt.NDArray[np.integer[Any]],
        rows: npt.NDArray[np.integer[Any]] | None = None,
    ) -> npt.NDArray[np.int8]:
        """Reason codes of clients x items: every rule, written once over arrays that broadcast.

        One client is a table of one; one item is a list of one. The first failing rule, in the order of
        :data:`REASONS`, is the code.

        Args:
            table: the clients (:meth:`ClientTable.build`, with the same centres).
            positions: catalogue positions (default: the whole catalogue).
            on: the day of evaluation, or one day ordinal (``date.toordinal()``) per client of ``rows``.
            rows: which clients of ``table`` (default: all).

        Returns:
            int8 ``(len(rows), len(positions))``, 0 = eligible, else an index into :data:`REASONS`.
        """
        it: Any = np.arange(len(self.opportunities)) if positions is None else np.asarray(positions, dtype=np.intp)
        cr: Any = slice(None) if rows is None else np.asarray(rows, dtype=np.intp)
        n = len(table) if rows is None else int(cr.size)
        codes = np.zeros((n, int(it.size)), dtype=np.int8)
        col = (slice(None), None)

        def apply(reason: str, failed: npt.NDArray[np.bool_]) -> None:
            codes[(codes == 0) & failed] = REASON_INDEX[reason]

        # A rule whose client side holds for every client cannot fail: it is skipped (the first failing rule
        # still decides the code, so skipping changes nothing but the time).
        centre = table.centre[cr]
        apply("other_centre", centre[col] != self._centre[it])
        if table.below_centre_age[cr].any():
            apply("centre_min_age", np.broadcast_to(table.below_centre_age[cr][col], codes.shape))
        age = table.age[cr][col]
        apply("item_age", (age < self._min_age[it]) | (age > self._max_age[it]))
        allowed = np.where(table.is_te[cr][col], self._allows_te[it], self._allows_mun[it])
        apply("client_type", ~(allowed & table.type_allowed[cr][col]))
        if not table.work_permit[cr].all():
            apply("work_permit", ~table.work_permit[cr][col] & self._needs_permit[it])
        if not table.in_integration[cr].all():
            apply("integration_period", ~table.in_integration[cr][col] & self._integration_only[it])
        below = table.below_group_finnish[cr]
        if below.any():
            apply("centre_language_gate", self._group_route[centre][:, it] & below[col])
        # Any one of the required languages suffices when several are listed (fi or sv or en working language):
        # language j passes when required and the shortfall (after the S2 offset) is at most the soft steps.
        lang = table.lang[cr]
        lang_ok = np.broadcast_to(self._lang_free[it], codes.shape).copy()
        for j in range(len(_LANGS)):
            lang_ok |= self._lang_pass[j][it] <= lang[:, j][col]
        apply("language_gate", ~lang_ok)
        apply("literacy_gate", self._min_lit[it].astype(np.int16) - table.literacy[cr].astype(np.int16)[col] > 1)
        apply("education_prerequisite", self._min_isced[it] > table.isced[cr][col])
        if not table.recognised[cr].all():
            apply("recognition_missing", ~table.recognised[cr][col] & self._needs_recognition[it])
        apply("no_seats", np.broadcast_to(self._seats_left[it] <= 0, codes.shape))
        day = np.asarray(on.toordinal() if isinstance(on, date) else on, dtype=np.int64)
        last = self._last_intake[it]
        apply("no_intake", ~self._continuous[it] & (last < (day[col] if day.ndim else day)))
        dist = self._table_distances(table)[table.mun[cr]][:, self._mun[it]]
        apply("too_far", dist > table.max_travel_km[cr][col])
        return codes

    def _table_distances(self, table: ClientTable) -> npt.NDArray[np.float32]:
        """Distances (km) from each of the table's municipalities to each of the catalogue's."""
        return (
            np.stack([self._distance_row(m) for m in table.municipalities])
            if table.municipalities
            else (np.zeros((0, len(self.municipalities)), dtype=np.float32))
        )
