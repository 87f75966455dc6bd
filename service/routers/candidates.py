"""POST /v1/opportunities/{id}/candidates: who fits this vacancy or trial slot (consenting clients only)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Body

from features.records import OpportunityId
from service.candidates import candidates_for
from service.deps import Coordinator, ImpressionsDep, MetricsDep, ProfileCacheDep, SessionDep, SnapshotDep
from service.schemas import ERROR_RESPONSES, NOT_FOUND, CandidatesRequest, CandidatesResponse

router = APIRouter(prefix="/v1", tags=["candidates"])


@router.post(
    "/opportunities/{opportunity_id}/candidates",
    operation_id="rankCandidates",
    response_model=CandidatesResponse,
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def post_candidates(
    opportunity_id: OpportunityId,
    principal: Coordinator,
    session: SessionDep,
    snapshot: SnapshotDep,
    metrics: MetricsDep,
    profiles: ProfileCacheDep,
    impressions: ImpressionsDep,
    req: CandidatesRequest = Body(default_factory=CandidatesRequest),
) -> CandidatesResponse:
    """Rank the clients of the opportunity's centre who consented to matching and to sharing with coordinators.

    Returns pseudonymous ids, score, readiness, language support and coaching needs; never audit attributes.
    Every disclosed client is audited, and the list is stored as an impression (`impression_id`).
    """
    return candidates_for(
        opportunity_id, req, principal, session, snapshot, profiles, metrics, date.today(), impressions
    )
