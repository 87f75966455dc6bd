"""Use cases the routers call for ranking: ``suggest`` (counsellors) and ``rank_candidates`` (coordinators).

They take verified inputs and a model :class:`~service.model_holder.Snapshot`, and return API schemas. Words
for reasons, gaps and exclusions come from ``models.explain`` / ``models.messages``; paths from
``models.paths.PathPlanner`` (one planner and one remedy index per snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, cast

import numpy as np
from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from features.records import KINDS, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy
from models.explain import RemedyIndex, explain, outcome_reasons
from models.explain import gaps as explain_gaps
from models.exploration import SlatePolicy
from models.messages import exclusion_text, reason_text
from models.paths import PathPlanner
from service.auth import Principal, ensure_centre
from service.congestion import CentrePrices, centre_prices
from service.deps import actor_of
from service.impressions import ImpressionLog, Row, impression_row
from service.metrics import ServiceMetrics
from service.model_holder import Snapshot
from service.schemas import (
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
from service.storage import repositories as repo


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


def suggestions_for(
    req: SuggestionsRequest,
    principal: Principal,
    session: Session,
    snapshot: Snapshot,
    metrics: ServiceMetrics,
    today: date,
    impressions: ImpressionLog,
) -> SuggestionsResponse:
    """The use case behind ``POST /v1/suggestions``: the client, the consent, the audit, then :func:`suggest`.

    A stored client is read by id, an inline profile taken as given; either must belong to the caller's centre
    and have consented to matching, and the use is audited (``suggestions`` / ``suggestions_inline``) and
    committed before ranking. The slate is served by the app's policy and queued as impressions (one row per
    shown item, written off the request path).

    Raises:
        HTTPException: 404 unknown client, 403 another centre or no matching consent.
    """
    if req.client_id is not None:
        client = repo.get_client(session, req.client_id)
        if client is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="client not found")
        purpose = "suggestions"
    else:
        assert req.client is not None
        client, purpose = req.client, "suggestions_inline"
    ensure_centre(principal, client.centre)
    if not client.consent.matching:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="client has not consented to matching")
    repo.write_audit(session, actor_of(principal), [client.client_id], purpose)
    prices = None
    if req.congestion_aware and not snapshot.loaded.fallback:  # prices are in the learnt model's score units
        prices = centre_prices(session, snapshot, client.centre)
    session.commit()
    response, rows = serve_suggestions(
        client, req, snapshot, today, impressions.policy, impressions.new_id(), prices=prices
    )
    impressions.record(rows)
    for group in response.suggestions:
        metrics.suggestions.labels(kind=group.kind).inc()
    if response.model.fallback:
        metrics.fallback_answers.inc()
    return response


def suggest(
    client: ClientProfile,
    req: SuggestionsRequest,
    snapshot: Snapshot,
    today: date,
    policy: SlatePolicy | None = None,
    impression_id: str | None = None,
    *,
    prices: CentrePrices | None = None,
) -> SuggestionsResponse:
    """Top-k opportunities per kind with reasons, gaps and remedies, exclusions, and optionally paths.

    Args:
        client: the (consenting or inline) client profile.
        req: the validated request.
        snapshot: model and catalogue to use for the whole answer.
        today: default reference date.
        policy: serving policy (default deterministic); see ``models.exploration``.
        impression_id: id of this answer (default: a new one); seeds a sampling policy.
        prices: the centre's congestion prices; when a run exists, each list is sorted by score minus price and
            an item that moved says so in its reasons.
    """
    return serve_suggestions(
        client, req, snapshot, today, policy, impression_id or ImpressionLog.new_id(), prices=prices
    )[0]


def serve_suggestions(
    client: ClientProfile,
    req: SuggestionsRequest,
    snapshot: Snapshot,
    today: date,
    policy: SlatePolicy | None,
    impression_id: str,
    *,
    prices: CentrePrices | None = None,
) -> tuple[SuggestionsResponse, list[Row]]:
    """:func:`suggest` and the impression rows of the answer (one per shown item)."""
    ref = req.reference_date or today
    cat = snapshot.catalogue
    model = snapshot.loaded.model
    elig = cat.evaluator.evaluate(client, ref)
    eligible = elig.eligible_indices
    kinds_arr = snapshot.derived("kinds", lambda: np.array([KINDS.index(o.kind) for o in cat.opportunities], np.int8))
    enc = model.encode_client(client)
    groups: list[KindSuggestions] = []
    candidates = [eligible[kinds_arr[eligible] == KINDS.index(kind)] for kind in req.kinds]
    price_of = prices.prices if prices is not None else None
    seeds = [ImpressionLog.seed(impression_id, g) for g in range(len(candidates))]
    results = model.rank_groups(
        enc, snapshot.items, candidates, req.k, ref, prices=price_of, policy=policy, seeds=seeds
    )
    info = model_info(snapshot)
    meta = {"name": info.name, "version": info.version}
    rows: list[Row] = []
    for kind, idx, result in zip(req.kinds, candidates, results, strict=True):
        items = []
        props = result.propensities if result.propensities is not None else np.ones(result.indices.size)
        reference = model.outcome_reference(kind)
        for rank, (pos, score, contrib) in enumerate(
            zip(result.indices, result.scores, result.contributions, strict=True), start=1
        ):
            o = cat.opportunities[int(pos)]
            rows.append(
                impression_row(
                    impression_id,
                    surface="suggestions",
                    client_id=client.client_id,
                    opportunity_id=o.opportunity_id,
                    kind=o.kind,
                    position=rank,
                    score=float(score),
                    model=meta,
                    policy=result.policy,
                    propensity=float(props[rank - 1]),
                    explored=result.explored,
                    reference_date=ref,
                )
            )
            outcome = _outcome_of(result.outcomes, rank - 1)
            found = explain(result.feature_names, client, o, contrib, req.lang)
            if outcome:
                found = [*found, *outcome_reasons(outcome, reference, req.lang)]
            reasons = [Reason(feature=r.code, text=r.text, weight=round(float(r.weight), 4)) for r in found]
            price = None if price_of is None else float(price_of[int(pos)])
            if result.plain_ranks is not None and price is not None:
                reasons = [*_congestion_reasons(rank, int(result.plain_ranks[rank - 1]), price, req.lang), *reasons]
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
                    congestion_price=None if price is None else round(price, 6),
                )
            )
        groups.append(KindSuggestions(kind=kind, count=len(items), eligible=int(idx.size), items=items))
    named = [_named_status(oid, elig.reason_for(oid), oid in cat.position, req.lang) for oid in req.explain]
    counts = elig.excluded_counts()
    paths = _paths(client, snapshot, ref, req.lang) if req.include_paths else []
    response = SuggestionsResponse(
        impression_id=impression_id,
        policy=results[0].policy if results else (policy.name if policy else "deterministic"),
        explored=any(r.explored for r in results),
        client_id=client.client_id,
        reference_date=ref,
        model=info,
        suggestions=groups,
        excluded=ExclusionSummary(total=sum(counts.values()), by_reason=counts, named=named),
        paths=paths,
        price_run=prices.run if prices is not None else None,
    )
    return response, rows


def _congestion_reasons(rank: int, plain_rank: int, price: float, lang: str) -> list[Reason]:
    """Why an item sits where it does when congestion prices moved it (nothing when it did not move)."""
    if rank < plain_rank:
        return [Reason(feature="congestion", text=reason_text("congestion_alternative", lang), weight=0.0)]
    if rank > plain_rank and price > 0:
        return [Reason(feature="congestion", text=reason_text("congested", lang), weight=round(-price, 4))]
    return []


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
