"""Explanations: reasons in words from ranker contributions, and gaps with the catalogue trainings that close them."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from features.eligibility import S2_OFFSET_STEPS
from features.language import level_from_ordinal, level_ordinal
from features.records import LITERACY_LEVELS, ClientProfile, Opportunity
from features.taxonomy import Taxonomy, default_taxonomy
from models.messages import LITERACY_NAMES, feature_family, gap_text, language_name, reason_text

if TYPE_CHECKING:
    from models.package import PolkuModel

MAX_REASONS: Final = 3
MAX_SKILL_GAPS: Final = 8
MAX_REMEDIES: Final = 5
_MIN_SHARE: Final = 0.05  # a family below this share of the positive total is noise, not a reason


@dataclass(frozen=True)
class Reason:
    """Why an item is suggested: one feature family with a positive contribution.

    Attributes:
        code: the feature family (e.g. ``skills``, ``distance``).
        text: the reason in the requested language.
        weight: the family's summed contribution to the score.
        features: feature names that make up the family's contribution.
    """

    code: str
    text: str
    weight: float
    features: tuple[str, ...]


@dataclass(frozen=True)
class Gap:
    """Something the client lacks for an item, with the catalogue trainings that would close it.

    Attributes:
        kind: ``skill``, ``language``, ``literacy``, ``digital``, ``education`` or ``recognition``.
        code: the skill URI, language code, or the kind again.
        label: human label (skill name, language name).
        have: the client's current level (None for skills).
        need: the level needed.
        text: the gap in the requested language.
        remedies: opportunity ids of trainings whose completion closes the gap.
    """

    kind: str
    code: str
    label: str
    have: str | None
    need: str | None
    text: str
    remedies: list[str] = field(default_factory=list)


class RemedyIndex:
    """Which trainings of a catalogue close which gap (built once per catalogue).

    Trainings are grouped per centre (and for all centres) and sorted by the level they reach, so a lookup
    walks only the trainings that qualify and stops at :data:`MAX_REMEDIES` usable ones.

    Args:
        catalogue: opportunities; only trainings are remedies.
    """

    def __init__(self, catalogue: Sequence[Opportunity]) -> None:
        self._skills: dict[tuple[str | None, str], list[Opportunity]] = defaultdict(list)
        levelled: dict[tuple[str, str | None], list[tuple[int, Opportunity]]] = defaultdict(list)
        for o in catalogue:
            if o.kind != "training":
                continue
            c = o.completion
            entries: list[tuple[str, int]] = [
                (f"lang:{lang}", level_ordinal(lv)) for lang, lv in c.language_reached.items()
            ]
            if c.literacy_reached is not None:
                entries.append(("literacy", LITERACY_LEVELS.index(c.literacy_reached)))
            if c.digital_reached is not None:
                entries.append(("digital", c.digital_reached))
            if c.isced_reached is not None:
                entries.append(("isced", c.isced_reached))
            for centre in (None, o.centre):
                for uri in c.skills_gained:
                    self._skills[(centre, uri)].append(o)
                for table, level in entries:
                    levelled[(table, centre)].append((level, o))
        self._levelled: dict[tuple[str, str | None], tuple[list[int], list[Opportunity]]] = {}
        for key, rows in levelled.items():
            rows.sort(key=lambda t: t[0])  # stable: catalogue order within a level
            self._levelled[key] = ([lv for lv, _ in rows], [o for _, o in rows])

    @staticmethod
    def _pick(items: Sequence[Opportunity], on: date | None, start: int = 0) -> list[str]:
        """The first :data:`MAX_REMEDIES` of ``items[start:]`` with an intake on or after ``on``."""
        usable = (o.opportunity_id for o in islice(items, start, None) if on is None or o.intake.next_start(on))
        return list(islice(usable, MAX_REMEDIES))

    def _reaching(self, table: str, need: int, centre: str | None, on: date | None) -> list[str]:
        levels, items = self._levelled.get((table, centre), ([], []))
        return self._pick(items, on, bisect_left(levels, need))

    def for_skill(self, uri: str, centre: str | None = None, on: date | None = None) -> list[str]:
        """Trainings that give a skill."""
        return self._pick(self._skills.get((centre, uri), []), on)

    def for_language(self, lang: str, need: int, centre: str | None = None, on: date | None = None) -> list[str]:
        """Trainings whose completion reaches at least ordinal ``need`` in ``lang`` (closest level first)."""
        return self._reaching(f"lang:{lang}", need, centre, on)

    def for_literacy(self, need: int, centre: str | None = None, on: date | None = None) -> list[str]:
        """Trainings reaching a literacy index (0 none, 1 basic, 2 functional)."""
        return self._reaching("literacy", need, centre, on)

    def for_digital(self, need: int, centre: str | None = None, on: date | None = None) -> list[str]:
        """Trainings reaching a digital skill level."""
        return self._reaching("digital", need, centre, on)

    def for_isced(self, need: int, centre: str | None = None, on: date | None = None) -> list[str]:
        """Trainings giving at least an ISCED level."""
        return self._reaching("isced", need, centre, on)


@lru_cache(maxsize=16)
def _family_index(feature_names: tuple[str, ...]) -> tuple[tuple[str, ...], npt.NDArray[np.float64]]:
    """The reason families of a model's columns and a (columns x families) 0/1 matrix, computed once per model."""
    of = [feature_family(name) for name in feature_names]
    families = tuple(dict.fromkeys(f for f in of if f))
    matrix = np.zeros((len(feature_names), len(families)), dtype=np.float64)
    for j, family in enumerate(of):
        if family:
            matrix[j, families.index(family)] = 1.0
    return families, matrix


def _family_contributions(
    feature_names: Sequence[str], contributions_row: npt.ArrayLike
) -> dict[str, tuple[float, list[str]]]:
    names = tuple(feature_names)
    row = np.asarray(contributions_row, dtype=np.float64).reshape(-1)[: len(names)]
    families, matrix = _family_index(names)
    totals = row @ matrix
    out: dict[str, tuple[float, list[str]]] = {}
    for f in np.flatnonzero(totals):
        members = np.flatnonzero(matrix[:, f] * (row > 0))
        out[families[int(f)]] = (float(totals[f]), [names[j] for j in members])
    return out


def _reason_values(family: str, client: ClientProfile, item: Opportunity, lang: str, tax: Taxonomy) -> dict[str, Any]:
    if family == "skills":
        have = {s.uri for s in client.skills}
        ess = item.required_skills.essential
        return {"coverage": round(100 * sum(u in have for u in ess) / len(ess)) if ess else 100}
    if family in ("prior_occupation", "goal_occupation"):
        ref = item.occupation or item.completion.leads_to
        label = ""
        if ref is not None and ref.esco_uri is not None:
            label = tax.occupation_label(ref.esco_uri, lang)
        elif ref is not None and ref.isco is not None:
            label = tax.isco_label(ref.isco, lang)
        return {"occupation": label or item.title.get(lang)}
    if family == "language_gain":
        return {"level": item.completion.language_reached.get("fi", "")}
    if family == "distance":
        return {"km": round(tax.distance_km(client.constraints.municipality, item.municipality))}
    if family == "start":
        start = item.intake.next_start(date.today())
        return {"start": start.isoformat() if start else "-"}
    if family == "duration":
        return {"weeks": round(item.duration_weeks)}
    return {}


def explain(
    model: PolkuModel | Sequence[str],
    client: ClientProfile,
    item: Opportunity,
    contributions_row: npt.ArrayLike,
    lang: str = "en",
    *,
    max_reasons: int = MAX_REASONS,
    taxonomy: Taxonomy | None = None,
) -> list[Reason]:
    """The strongest positive contributions of one suggestion, grouped by feature family, in words.

    Args:
        model: the model that scored the item (or just its feature names).
        client: the client.
        item: the suggested opportunity.
        contributions_row: the item's row of ``ranker.contributions`` (bias column allowed at the end).
        lang: fi, sv or en.
        max_reasons: at most this many reasons.
        taxonomy: vocabulary for labels (default: the shipped one).

    Returns:
        Reasons, strongest first; families contributing less than 5 % of the positive total are left out.
    """
    names = list(model) if not hasattr(model, "feature_names") else list(model.feature_names)  # type: ignore[union-attr]
    tax = taxonomy or default_taxonomy()
    families = _family_contributions(names, contributions_row)
    positive = {f: v for f, v in families.items() if v[0] > 0}
    total = sum(v[0] for v in positive.values())
    reasons: list[Reason] = []
    for family, (weight, feats) in sorted(positive.items(), key=lambda kv: -kv[1][0]):
        if len(reasons) >= max_reasons or weight < _MIN_SHARE * total:
            break
        text = reason_text(family, lang, **_reason_values(family, client, item, lang, tax))
        reasons.append(Reason(code=family, text=text, weight=weight, features=tuple(feats)))
    return reasons


@dataclass(frozen=True)
class Readiness:
    """How ready a candidate is for an item, as a coordinator sees it.

    Attributes:
        level: ``ready`` (no missing essential skill, language enough), ``ready_with_support`` (small gaps, or a
            language gap the item's S2 support covers) or ``needs_preparation`` (a language gap without S2 support,
            or more than half of the essential skills missing).
        language_support: the client would need language support in this item.
        gaps: short codes of the gaps (``language_<code>``, ``essential_skills_missing:<n>``).
    """

    level: str
    language_support: bool
    gaps: list[str]


S2_SUPPORT_BELOW: Final = "B1.1"
"""Finnish below this level needs language support in an S2-supported item."""
MOST_SKILLS_MISSING: Final = 0.5
"""More than this share of essential skills missing means preparation before the item."""


def readiness(client: ClientProfile, item: Opportunity) -> Readiness:
    """The coordinator's readiness view of one candidate for one item (the thresholds live here, not in routes)."""
    have = {s.uri for s in client.skills}
    missing = [u for u in item.required_skills.essential if u not in have]
    lang_gap = bool(item.min_language) and all(
        client.language_ordinal(c) < level_ordinal(lv) for c, lv in item.min_language.items()
    )
    n_ess = len(item.required_skills.essential)
    if not missing and not lang_gap:
        level = "ready"
    elif (lang_gap and not item.s2_support) or (n_ess and len(missing) > MOST_SKILLS_MISSING * n_ess):
        level = "needs_preparation"
    else:
        level = "ready_with_support"
    gaps = ([f"language_{min(item.min_language)}"] if lang_gap else []) + (
        [f"essential_skills_missing:{len(missing)}"] if missing else []
    )
    support = lang_gap or (item.s2_support and client.language_ordinal("fi") < level_ordinal(S2_SUPPORT_BELOW))
    return Readiness(level, bool(support), gaps)


COMPLETION_LIFT: Final = 1.1
"""An item is "often completed" when its P(start and complete | accepted) is this much above its kind's mean."""
MIN_COMPLETION: Final = 0.3
EMPLOYMENT_LIFT: Final = 0.03
"""An item "leads to work" when P(employed | completed) exceeds its route's and kind's base rate by this much."""
ACCEPT_LIFT: Final = 1.5
"""Similar clients "often take this up" when P(accept) is this many times its kind's mean."""


def outcome_reasons(
    outcome: Mapping[str, float], reference: Mapping[str, float] | None, lang: str = "en"
) -> list[Reason]:
    """Reasons from the outcome models' estimates for one item (``models.outcome``), strongest evidence first.

    Args:
        outcome: the item's ``p_accept``, ``p_start``, ``p_complete``, ``p_employ``, ``employ_base`` and
            ``item_history`` (times shown in the training period).
        reference: its kind's means of ``p_accept``, ``p_start`` and ``p_complete`` (= start and complete).
        lang: fi, sv or en.

    Returns:
        Up to four reasons: often completed, leads to work, often taken up, and a note when the item has no
        history (its estimate is its route's and kind's prior).
    """
    out: list[Reason] = []
    ref = reference or {}
    completion = float(outcome.get("p_start", np.nan)) * float(outcome.get("p_complete", np.nan))
    ref_completion = float(ref.get("p_complete", np.nan))
    if np.isfinite(completion) and completion >= MIN_COMPLETION and completion >= COMPLETION_LIFT * ref_completion:
        text = reason_text("often_completed", lang, pct=round(100 * completion))
        out.append(Reason("often_completed", text, completion, ("p_start", "p_complete")))
    lift = float(outcome.get("p_employ", np.nan)) - float(outcome.get("employ_base", np.nan))
    if np.isfinite(lift) and lift >= EMPLOYMENT_LIFT:
        out.append(Reason("leads_to_work", reason_text("leads_to_work", lang), lift, ("p_employ",)))
    accept = float(outcome.get("p_accept", np.nan))
    if np.isfinite(accept) and accept >= ACCEPT_LIFT * float(ref.get("p_accept", np.inf)):
        out.append(Reason("often_chosen", reason_text("often_chosen", lang), accept, ("p_accept",)))
    if float(outcome.get("item_history", np.nan)) == 0.0:
        out.append(Reason("new_item", reason_text("new_item", lang), 0.0, ("item_history_n",)))
    return out


def _language_gap(client: ClientProfile, item: Opportunity) -> tuple[str, int, int] | None:
    """The required language with the smallest shortfall (any one suffices), if all fall short."""
    best: tuple[str, int, int] | None = None
    offset = S2_OFFSET_STEPS if item.s2_support else 0
    for code, level in item.min_language.items():
        need = max(level_ordinal(level) - offset, 0)
        have = client.language_ordinal(code)
        if have >= need:
            return None
        if best is None or need - have < best[1] - best[2]:
            best = (code, need, have)
    return best


def gaps(
    client: ClientProfile,
    item: Opportunity,
    catalogue: RemedyIndex | Sequence[Opportunity],
    lang: str = "en",
    *,
    on: date | None = None,
    taxonomy: Taxonomy | None = None,
) -> list[Gap]:
    """What the client lacks for an item (essential skills, language, literacy, digital, education), with remedies.

    Args:
        client: the client.
        item: the opportunity.
        catalogue: a :class:`RemedyIndex` (build once per catalogue) or the catalogue itself.
        lang: fi, sv or en.
        on: when given, only trainings with an intake on or after this day count as remedies.
        taxonomy: vocabulary for labels.

    Returns:
        Gaps in a fixed order: language, literacy, digital, education, recognition, then missing skills.
    """
    index = catalogue if isinstance(catalogue, RemedyIndex) else RemedyIndex(catalogue)
    tax = taxonomy or default_taxonomy()
    centre = client.centre
    out: list[Gap] = []
    lg = _language_gap(client, item)
    if lg is not None:
        code, need, have = lg
        need_s, have_s = level_from_ordinal(need), level_from_ordinal(have)
        text = gap_text("language", lang, language=language_name(code, lang), need=need_s, have=have_s)
        remedies = index.for_language(code, need, centre, on)
        out.append(Gap("language", code, language_name(code, lang), have_s, need_s, text, remedies))
    lit_need, lit_have = LITERACY_LEVELS.index(item.min_literacy), LITERACY_LEVELS.index(client.literacy)
    if lit_need > lit_have:
        need_s = LITERACY_NAMES[item.min_literacy].get(lang, item.min_literacy)
        have_s = LITERACY_NAMES[client.literacy].get(lang, client.literacy)
        text = gap_text("literacy", lang, need=need_s, have=have_s)
        out.append(
            Gap(
                "literacy",
                "literacy",
                need_s,
                client.literacy,
                item.min_literacy,
                text,
                index.for_literacy(lit_need, centre, on),
            )
        )
    if item.min_digital > client.digital_skills:
        text = gap_text("digital", lang, need=item.min_digital, have=client.digital_skills)
        remedies = index.for_digital(item.min_digital, centre, on)
        out.append(Gap("digital", "digital", "", str(client.digital_skills), str(item.min_digital), text, remedies))
    if item.min_isced is not None and item.min_isced > client.highest_isced:
        text = gap_text("education", lang, need=item.min_isced, have=client.highest_isced)
        remedies = index.for_isced(item.min_isced, centre, on)
        out.append(Gap("education", "education", "", str(client.highest_isced), str(item.min_isced), text, remedies))
    recognised = any(e.recognition in ("recognised", "not_needed") for e in client.education)
    if item.requires_recognition and not recognised:
        out.append(Gap("recognition", "recognition", "", None, None, gap_text("recognition", lang), []))
    owned = {s.uri for s in client.skills}
    missing = [u for u in item.required_skills.essential if u not in owned][:MAX_SKILL_GAPS]
    for uri in missing:
        label = tax.skill_label(uri, lang)
        out.append(
            Gap("skill", uri, label, None, None, gap_text("skill", lang, label=label), index.for_skill(uri, centre, on))
        )
    return out
