"""Use cases the routers call for ranking: ``suggest`` (counsellors) and ``rank_candidates`` (coordinators).

They take verified inputs and a model :class:`~service.model_holder.Snapshot`, and return API schemas. The
explanations here are the service's compact fallback; richer wording comes from ``models.explain`` when the
lead wires it in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date

import numpy as np

from features.eligibility import REASONS, EligibilityEvaluator
from features.language import level_ordinal
from features.records import KINDS, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy
from service.model_holder import Snapshot
from service.schemas import (
    Candidate,
    CandidatesRequest,
    CandidatesResponse,
    ExclusionSummary,
    Gap,
    KindSuggestions,
    ModelInfo,
    NamedItemStatus,
    PathOut,
    PathStep,
    Reason,
    Remedy,
    SuggestionItem,
    SuggestionsRequest,
    SuggestionsResponse,
)

MAX_REASONS = 3
MAX_REMEDIES = 3
MAX_SKILL_GAPS = 5

_FEATURE_WORDS: dict[str, dict[str, str]] = {
    "ess_cov": {
        "en": "has the essential skills",
        "fi": "hallitsee olennaiset taidot",
        "sv": "har de väsentliga färdigheterna",
    },
    "opt_cov": {"en": "has useful extra skills", "fi": "hyödyllisiä lisätaitoja", "sv": "nyttiga extra färdigheter"},
    "goal_skill_gain": {
        "en": "builds skills for the goal",
        "fi": "kartuttaa tavoitteen taitoja",
        "sv": "bygger färdigheter för målet",
    },
    "occ_prior": {"en": "matches earlier work", "fi": "vastaa aiempaa työtä", "sv": "motsvarar tidigare arbete"},
    "occ_goal": {"en": "matches the goal occupation", "fi": "vastaa tavoiteammattia", "sv": "motsvarar målyrket"},
    "lang": {"en": "language level fits", "fi": "kielitaso riittää", "sv": "språknivån räcker"},
    "lang_gain_fi": {"en": "improves Finnish", "fi": "vahvistaa suomen kieltä", "sv": "förbättrar finskan"},
    "s2_support": {
        "en": "offers Finnish-as-second-language support",
        "fi": "tarjoaa S2-tukea",
        "sv": "erbjuder S2-stöd",
    },
    "dist": {"en": "close to home", "fi": "lähellä kotia", "sv": "nära hemmet"},
    "days_to_start": {"en": "starts soon", "fi": "alkaa pian", "sv": "börjar snart"},
    "continuous": {"en": "continuous admission", "fi": "jatkuva haku", "sv": "kontinuerlig antagning"},
    "hist_accept_rate": {"en": "often chosen by similar clients", "fi": "usein valittu", "sv": "ofta vald"},
}
_EXCLUSION_WORDS: dict[str, str] = {
    "other_centre": "offered by another competence centre",
    "centre_min_age": "below the centre's minimum age",
    "item_age": "outside the item's age limits",
    "client_type": "not open to this client type",
    "work_permit": "needs a work permit",
    "integration_period": "only during the integration period",
    "centre_language_gate": "group services need Finnish A2",
    "language_gate": "language level too far below the requirement",
    "literacy_gate": "literacy requirement not met",
    "education_prerequisite": "education prerequisite not met",
    "recognition_missing": "needs recognised qualifications",
    "no_seats": "no seats left",
    "no_intake": "no intake date ahead",
    "too_far": "too far from home",
}
_LANG_NAMES = {"fi": "Finnish", "sv": "Swedish", "en": "English"}


def model_info(snapshot: Snapshot) -> ModelInfo:
    """The ``model`` block of a ranking response."""
    lm = snapshot.loaded
    return ModelInfo(name=lm.name, version=lm.version, alias=lm.alias, fallback=lm.fallback)


def _word(feature: str, lang: str) -> str | None:
    for key, words in _FEATURE_WORDS.items():
        if feature == key or feature.startswith(key):
            return words.get(lang) or words["en"]
    return None


def _reasons(contrib: np.ndarray, names: Sequence[str], lang: str) -> list[Reason]:
    values = np.asarray(contrib[: len(names)], dtype=np.float64)
    out: list[Reason] = []
    for j in np.argsort(-values, kind="stable"):
        if values[j] <= 0 or len(out) >= MAX_REASONS:
            break
        text = _word(names[j], lang)
        if text is not None and all(r.text != text for r in out):
            out.append(Reason(feature=names[j], text=text, weight=round(float(values[j]), 4)))
    return out


class _RemedyIndex:
    """Eligible trainings by the skill or language level their completion gives."""

    def __init__(self, opps: Sequence[Opportunity], eligible: np.ndarray, on: date, lang: str) -> None:
        self.by_skill: dict[str, list[Remedy]] = defaultdict(list)
        self.by_lang: dict[str, list[tuple[int, Remedy]]] = defaultdict(list)
        for i in eligible:
            o = opps[int(i)]
            if o.kind != "training":
                continue
            remedy = Remedy(
                opportunity_id=o.opportunity_id,
                title=o.title.get(lang),
                next_start=o.intake.next_start(on),
                weeks=o.duration_weeks,
            )
            for uri in o.completion.skills_gained:
                self.by_skill[uri].append(remedy)
            for code, level in o.completion.language_reached.items():
                self.by_lang[code].append((level_ordinal(level), remedy))

    def for_skill(self, uri: str) -> list[Remedy]:
        return self.by_skill.get(uri, [])[:MAX_REMEDIES]

    def for_language(self, code: str, needed: int) -> list[Remedy]:
        return [r for lvl, r in self.by_lang.get(code, []) if lvl >= needed][:MAX_REMEDIES]


def _gaps(client: ClientProfile, opp: Opportunity, remedies: _RemedyIndex, lang: str) -> list[Gap]:
    tax = default_taxonomy()
    have = {s.uri for s in client.skills}
    gaps: list[Gap] = []
    for uri in [u for u in opp.required_skills.essential if u not in have][:MAX_SKILL_GAPS]:
        label = tax.skill_label(uri, lang if lang in ("fi", "en") else "en")
        gaps.append(
            Gap(
                type="skill",
                code=uri,
                label=label,
                text=f"missing essential skill: {label}",
                remedies=remedies.for_skill(uri),
            )
        )
    if opp.min_language:
        shortfalls = {c: level_ordinal(lv) - client.language_ordinal(c) for c, lv in opp.min_language.items()}
        if all(s > 0 for s in shortfalls.values()):
            code = min(shortfalls, key=lambda c: shortfalls[c])
            need = opp.min_language[code]
            gaps.append(
                Gap(
                    type="language",
                    code=code,
                    label=f"{_LANG_NAMES.get(code, code)} {need}",
                    text=f"needs {_LANG_NAMES.get(code, code)} {need}",
                    remedies=remedies.for_language(code, level_ordinal(need)),
                )
            )
    return gaps


def suggest(client: ClientProfile, req: SuggestionsRequest, snapshot: Snapshot, today: date) -> SuggestionsResponse:
    """Top-k opportunities per kind with reasons, gaps and remedies, exclusions, and optionally paths.

    Args:
        client: the (consenting or inline) client profile.
        req: the validated request.
        snapshot: model and catalogue to use for the whole answer.
        today: default reference date.
    """
    ref = req.reference_date or today
    cat = snapshot.catalogue
    model = snapshot.loaded.model
    elig = cat.evaluator.evaluate(client, ref)
    eligible = elig.eligible_indices
    kinds_arr = np.array([KINDS.index(o.kind) for o in cat.opportunities], dtype=np.int8)
    enc = model.encode_client(client)
    remedies = _RemedyIndex(cat.opportunities, eligible, ref, req.lang)
    groups: list[KindSuggestions] = []
    for kind in req.kinds:
        idx = eligible[kinds_arr[eligible] == KINDS.index(kind)] if eligible.size else eligible
        result = model.rank(enc, snapshot.items, idx, req.k, ref)
        items = []
        for rank, (pos, score, contrib) in enumerate(
            zip(result.indices, result.scores, result.contributions, strict=True), start=1
        ):
            o = cat.opportunities[int(pos)]
            items.append(
                SuggestionItem(
                    opportunity_id=o.opportunity_id,
                    kind=o.kind,
                    title=o.title.get(req.lang),
                    provider=o.provider,
                    municipality=o.municipality,
                    rank=rank,
                    score=round(float(score), 6),
                    reasons=_reasons(contrib, result.feature_names, req.lang),
                    gaps=_gaps(client, o, remedies, req.lang),
                    next_start=o.intake.next_start(ref),
                    needs_te_decision=o.needs_te_decision,
                    seats_left=o.seats_left,
                )
            )
        groups.append(KindSuggestions(kind=kind, count=len(items), eligible=int(idx.size), items=items))
    named = [_named_status(oid, elig.reason_for(oid), oid in cat.position) for oid in req.explain]
    counts = elig.excluded_counts()
    paths = _paths(client, snapshot, ref, req.lang) if req.include_paths else []
    return SuggestionsResponse(
        client_id=client.client_id,
        reference_date=ref,
        model=model_info(snapshot),
        suggestions=groups,
        excluded=ExclusionSummary(total=sum(counts.values()), by_reason=counts, named=named),
        paths=paths,
    )


def _named_status(opportunity_id: str, reason: str | None, known: bool) -> NamedItemStatus:
    if not known:
        return NamedItemStatus(opportunity_id=opportunity_id, status="unknown")
    if reason is None:
        return NamedItemStatus(opportunity_id=opportunity_id, status="eligible")
    return NamedItemStatus(
        opportunity_id=opportunity_id, status="excluded", reason=reason, text=_EXCLUSION_WORDS.get(reason, reason)
    )


def _paths(client: ClientProfile, snapshot: Snapshot, ref: date, lang: str) -> list[PathOut]:
    """Paths from ``models.paths.PathPlanner`` (empty when the planner is not available)."""
    try:
        from models.paths import PathPlanner  # type: ignore[import-untyped]
    except ImportError:
        return []
    planner = PathPlanner(list(snapshot.catalogue.opportunities), snapshot.loaded.model)  # type: ignore[call-arg]
    goals = list(client.goals.target_occupations)
    plans = planner.plan(client, goals, max_steps=4, n_paths=3)  # type: ignore[attr-defined]
    return [_path_out(p, snapshot, ref, lang) for p in plans]


def _path_out(plan: object, snapshot: Snapshot, ref: date, lang: str) -> PathOut:
    steps: list[PathStep] = []
    for step in getattr(plan, "steps", []):
        oid = getattr(step, "opportunity_id", None) or getattr(getattr(step, "opportunity", None), "opportunity_id", "")
        pos = snapshot.catalogue.position.get(str(oid))
        if pos is None:
            continue
        o = snapshot.catalogue.opportunities[pos]
        start = getattr(step, "start", None) or o.intake.next_start(ref)
        gives = [str(g) for g in getattr(step, "gives", [])]
        steps.append(
            PathStep(
                opportunity_id=o.opportunity_id,
                kind=o.kind,
                title=o.title.get(lang),
                start=start,
                weeks=o.duration_weeks,
                gives=gives,
            )
        )
    goal = getattr(plan, "goal", "")
    return PathOut(
        goal=str(getattr(goal, "isco", None) or getattr(goal, "esco_uri", None) or goal),
        steps=steps,
        score=float(getattr(plan, "score", 0.0)),
        weeks_to_goal=float(getattr(plan, "weeks_to_goal", sum(s.weeks for s in steps))),
    )


# ---------------------------------------------------------------------------------------------- candidates
def rank_candidates(
    opp: Opportunity, clients: Sequence[ClientProfile], req: CandidatesRequest, snapshot: Snapshot, today: date
) -> CandidatesResponse:
    """Rank consenting clients for one opportunity (eligible ones only), with readiness and support needs.

    Args:
        opp: the opportunity (from the store).
        clients: consenting clients of the opportunity's centre (already filtered by consent in SQL).
        req: the validated request.
        snapshot: model to score with.
        today: default reference date.
    """
    ref = req.reference_date or today
    model = snapshot.loaded.model
    evaluator = EligibilityEvaluator([opp])
    items = model.encode_items([opp])
    zero = np.zeros(1, dtype=np.int64)
    excluded: dict[str, int] = defaultdict(int)
    scored: list[tuple[float, ClientProfile]] = []
    for client in clients:
        code = int(evaluator.evaluate(client, ref).reason_codes[0])
        if code != 0:
            excluded[REASONS[code]] += 1
            continue
        score = float(model.score(model.encode_client(client), items, zero, ref)[0])
        scored.append((score, client))
    scored.sort(key=lambda t: (-t[0], t[1].client_id))
    data = [_candidate(c, opp, rank, s) for rank, (s, c) in enumerate(scored[: req.k], start=1)]
    return CandidatesResponse(
        opportunity_id=opp.opportunity_id,
        model=model_info(snapshot),
        considered=len(clients),
        excluded_by_reason=dict(excluded),
        count=len(data),
        data=data,
    )


def _candidate(client: ClientProfile, opp: Opportunity, rank: int, score: float) -> Candidate:
    have = {s.uri for s in client.skills}
    missing = [u for u in opp.required_skills.essential if u not in have]
    lang_gap = bool(opp.min_language) and all(
        client.language_ordinal(c) < level_ordinal(lv) for c, lv in opp.min_language.items()
    )
    n_ess = len(opp.required_skills.essential)
    if not missing and not lang_gap:
        readiness = "ready"
    elif (lang_gap and not opp.s2_support) or (n_ess and len(missing) > n_ess / 2):
        readiness = "needs_preparation"
    else:
        readiness = "ready_with_support"
    gaps = ([f"language_{min(opp.min_language)}"] if lang_gap else []) + (
        [f"essential_skills_missing:{len(missing)}"] if missing else []
    )
    return Candidate(
        client_id=client.client_id,
        rank=rank,
        score=round(score, 6),
        readiness=readiness,  # type: ignore[arg-type]
        language_support=lang_gap or (opp.s2_support and client.language_ordinal("fi") < level_ordinal("B1.1")),
        coaching_need=client.support_need,
        gaps=gaps,
    )
