"""Use cases the routers call for ranking: ``suggest`` (counsellors) and ``rank_candidates`` (coordinators).

They take verified inputs and a model :class:`~service.model_holder.Snapshot`, and return API schemas. Words
for reasons, gaps and exclusions come from ``models.explain`` / ``models.messages``; paths from
``models.paths.PathPlanner`` (one planner and one remedy index per snapshot).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar, cast

import numpy as np

from features.eligibility import REASONS, ClientTable, EligibilityEvaluator
from features.language import level_ordinal
from features.pairs import EncodedClients
from features.records import KINDS, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy
from models.explain import RemedyIndex, explain, outcome_reasons
from models.explain import gaps as explain_gaps
from models.messages import exclusion_text
from models.package import PolkuModel
from models.paths import PathPlanner
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


def model_info(snapshot: Snapshot) -> ModelInfo:
    """The ``model`` block of a ranking response."""
    lm = snapshot.loaded
    return ModelInfo(name=lm.name, version=lm.version, alias=lm.alias, fallback=lm.fallback)


def _remedy_index(snapshot: Snapshot) -> RemedyIndex:
    return snapshot.derived("remedies", lambda: RemedyIndex(snapshot.catalogue.opportunities))


def _planner(snapshot: Snapshot) -> PathPlanner:
    return snapshot.derived("planner", lambda: PathPlanner(snapshot.catalogue.opportunities, snapshot.loaded.model))


_MAX_REMEDIES = 100_000
"""Cached remedy blocks per snapshot (a few per gap, dozens per answer; building each costs ~10 µs)."""


def _remedy(snapshot: Snapshot, opportunity_id: str, on: date, lang: str) -> Remedy | None:
    """The remedy block of a catalogue training, cached per snapshot, day and language (responses share it)."""
    cache: dict[tuple[str, date, str], Remedy | None] = snapshot.derived("remedy_blocks", dict)
    key = (opportunity_id, on, lang)
    hit = cache.get(key, _MISSING)
    if hit is not _MISSING:
        return cast("Remedy | None", hit)
    pos = snapshot.catalogue.position.get(opportunity_id)
    remedy: Remedy | None = None
    if pos is not None:
        o = snapshot.catalogue.opportunities[pos]
        remedy = Remedy(
            opportunity_id=o.opportunity_id,
            title=o.title.get(lang),
            next_start=o.intake.next_start(on),
            weeks=o.duration_weeks,
        )
    if len(cache) >= _MAX_REMEDIES:
        cache.clear()
    cache[key] = remedy
    return remedy


_MISSING = object()


def _gaps(client: ClientProfile, opp: Opportunity, snapshot: Snapshot, on: date, lang: str) -> list[Gap]:
    out: list[Gap] = []
    for g in explain_gaps(client, opp, _remedy_index(snapshot), lang, on=on):
        remedies = [r for r in (_remedy(snapshot, oid, on, lang) for oid in g.remedies) if r is not None]
        out.append(
            Gap(type=g.kind, code=g.code, label=g.label, have=g.have, need=g.need, text=g.text, remedies=remedies)
        )
    return out


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
    kinds_arr = snapshot.derived("kinds", lambda: np.array([KINDS.index(o.kind) for o in cat.opportunities], np.int8))
    enc = model.encode_client(client)
    groups: list[KindSuggestions] = []
    candidates = [eligible[kinds_arr[eligible] == KINDS.index(kind)] for kind in req.kinds]
    results = model.rank_groups(enc, snapshot.items, candidates, req.k, ref)
    for kind, idx, result in zip(req.kinds, candidates, results, strict=True):
        items = []
        reference = model.outcome_reference(kind)
        for rank, (pos, score, contrib) in enumerate(
            zip(result.indices, result.scores, result.contributions, strict=True), start=1
        ):
            o = cat.opportunities[int(pos)]
            outcome = _outcome_of(result.outcomes, rank - 1)
            found = explain(result.feature_names, client, o, contrib, req.lang)
            if outcome:
                found = [*found, *outcome_reasons(outcome, reference, req.lang)]
            reasons = [Reason(feature=r.code, text=r.text, weight=round(float(r.weight), 4)) for r in found]
            items.append(
                SuggestionItem(
                    opportunity_id=o.opportunity_id,
                    kind=o.kind,
                    title=o.title.get(req.lang),
                    provider=o.provider,
                    municipality=o.municipality,
                    rank=rank,
                    score=round(float(score), 6),
                    p_accept=_rounded(outcome.get("p_accept")),
                    expected_outcome=_rounded(outcome.get("expected_outcome")),
                    reasons=reasons,
                    gaps=_gaps(client, o, snapshot, ref, req.lang),
                    next_start=o.intake.next_start(ref),
                    needs_te_decision=o.needs_te_decision,
                    seats_left=o.seats_left,
                )
            )
        groups.append(KindSuggestions(kind=kind, count=len(items), eligible=int(idx.size), items=items))
    named = [_named_status(oid, elig.reason_for(oid), oid in cat.position, req.lang) for oid in req.explain]
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


def _outcome_of(outcomes: Mapping[str, Any] | None, row: int) -> dict[str, float]:
    """One returned item's outcome estimates ({} for rankers without outcome models)."""
    return {} if outcomes is None else {key: float(values[row]) for key, values in outcomes.items()}


def _rounded(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def _named_status(opportunity_id: str, reason: str | None, known: bool, lang: str) -> NamedItemStatus:
    if not known:
        return NamedItemStatus(opportunity_id=opportunity_id, status="unknown")
    if reason is None:
        return NamedItemStatus(opportunity_id=opportunity_id, status="eligible")
    return NamedItemStatus(
        opportunity_id=opportunity_id, status="excluded", reason=reason, text=exclusion_text(reason, lang)
    )


def _paths(client: ClientProfile, snapshot: Snapshot, ref: date, lang: str) -> list[PathOut]:
    """Up to three multi-step paths towards the client's goal occupations (``models.paths.PathPlanner``)."""
    tax = default_taxonomy()
    out: list[PathOut] = []
    for plan in _planner(snapshot).plan(client, ref, max_steps=4, n_paths=3):
        steps: list[PathStep] = []
        for step in plan.steps:
            pos = snapshot.catalogue.position.get(step.opportunity_id)
            title = snapshot.catalogue.opportunities[pos].title.get(lang) if pos is not None else step.title
            steps.append(
                PathStep(
                    opportunity_id=step.opportunity_id,
                    kind=step.kind,
                    title=title,  # type: ignore[arg-type]
                    start=step.start,
                    weeks=step.weeks,
                    gives=step.gives,
                )
            )
        try:
            goal_label: str | None = tax.isco_label(plan.goal_isco, lang)
        except (KeyError, ValueError):
            goal_label = None
        out.append(
            PathOut(
                goal=plan.goal_isco,
                goal_label=goal_label,
                steps=steps,
                score=round(float(plan.score), 6),
                weeks_to_goal=round(float(plan.weeks_to_goal), 2),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- candidates
def rank_candidates(
    opp: Opportunity, clients: Sequence[ClientProfile], req: CandidatesRequest, snapshot: Snapshot, today: date
) -> CandidatesResponse:
    """Rank consenting clients for one opportunity (eligible ones only), with readiness and support needs.

    The pool is encoded once per model (:func:`candidate_pool`); eligibility, the cheap first stage and the
    features are computed for the whole pool at once, and the best :data:`SECOND_STAGE_K` by the first stage
    are scored by the ranker in one call.

    Args:
        opp: the opportunity (from the store).
        clients: consenting clients of the opportunity's centre (already filtered by consent in SQL).
        req: the validated request.
        snapshot: model to score with.
        today: default reference date.
    """
    ref = req.reference_date or today
    model = snapshot.loaded.model
    pos = snapshot.catalogue.position.get(opp.opportunity_id)
    if pos is not None and snapshot.catalogue.opportunities[pos] == opp:
        # The snapshot's encoded catalogue avoids touching the featurizer's (non thread-safe) encoding cache.
        evaluator, items, item = snapshot.catalogue.evaluator, snapshot.items, pos
    else:
        evaluator, items, item = EligibilityEvaluator([opp]), model.encode_items([opp]), 0
    pool = candidate_pool(snapshot, clients)
    codes = evaluator.evaluate_clients(pool.table, item, ref)
    counts = np.bincount(codes.astype(np.intp), minlength=len(REASONS))
    excluded = {REASONS[i]: int(c) for i, c in enumerate(counts) if i > 0 and c > 0}
    ranking = model.rank_clients(pool.batch, items, item, np.flatnonzero(codes == 0), req.k, ref)
    ranked = [(float(sc), pool.clients[int(r)]) for r, sc in zip(ranking.rows, ranking.scores, strict=True)]
    data = [_candidate(c, opp, rank, sc) for rank, (sc, c) in enumerate(ranked, start=1)]
    return CandidatesResponse(
        opportunity_id=opp.opportunity_id,
        model=model_info(snapshot),
        considered=len(clients),
        excluded_by_reason=excluded,
        count=len(data),
        data=data,
    )


_MAX_POOLS = 16
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class CandidatePool:
    """A client pool encoded for one model: eligibility table and stacked feature inputs."""

    clients: Sequence[ClientProfile]
    members: tuple[int, ...]
    table: ClientTable
    batch: EncodedClients


def candidate_pool(snapshot: Snapshot, clients: Sequence[ClientProfile]) -> CandidatePool:
    """The encoded pool of ``clients``, reused while the same profile objects come back (one per centre).

    The profile cache hands back the very same objects while the stored profiles are unchanged, so identity
    of every member is a sound key; a changed profile is a new object and rebuilds the pool.
    """
    cache: OrderedDict[int, CandidatePool] = _model_cache(snapshot, "candidate_pools", OrderedDict)
    members = tuple(map(id, clients))
    with _POOL_LOCK:
        hit = cache.get(id(clients))
        if hit is not None and hit.members == members:
            cache.move_to_end(id(clients))
            return hit
    pool = CandidatePool(clients, members, ClientTable.build(clients), snapshot.loaded.model.encode_clients(clients))
    with _POOL_LOCK:
        cache[id(clients)] = pool  # the pool holds the list, so its id cannot be reused while cached
        while len(cache) > _MAX_POOLS:
            cache.popitem(last=False)
    return pool


_POOL_LOCK = threading.Lock()
_MODEL_CACHES: weakref.WeakKeyDictionary[PolkuModel, dict[str, Any]] = weakref.WeakKeyDictionary()


def _model_cache(snapshot: Snapshot, key: str, build: Callable[[], T]) -> T:
    """A cache that lives as long as the snapshot's model (client encodings survive catalogue refreshes)."""
    model = snapshot.loaded.model
    with _POOL_LOCK:
        caches = _MODEL_CACHES.setdefault(model, {})
        if key not in caches:
            caches[key] = build()
        return cast(T, caches[key])


def warm_candidate_pools(snapshot: Snapshot, pools: Iterable[Sequence[ClientProfile]]) -> int:
    """Encode client pools ahead of the first candidates request (at start-up). Returns the clients encoded."""
    return sum(len(candidate_pool(snapshot, clients).clients) for clients in pools)


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
