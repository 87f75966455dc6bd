"""POST /v1/opportunities/{id}/candidates: who fits this vacancy or trial slot (consenting clients only)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Body, HTTPException, Request, status

from features.records import OpportunityId
from service.auth import ensure_centre
from service.deps import Coordinator, MetricsDep, SessionDep, SnapshotDep, actor_of
from service.profile_cache import ProfileCache
from service.schemas import ERROR_RESPONSES, NOT_FOUND, CandidatesRequest, CandidatesResponse
from service.storage import repositories as repo
from service.suggest import rank_candidates

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
    request: Request,
    req: CandidatesRequest = Body(default_factory=CandidatesRequest),
) -> CandidatesResponse:
    """Rank the clients of the opportunity's centre who consented to matching and to sharing with coordinators.

    Returns pseudonymous ids, score, readiness, language support and coaching needs; never audit attributes.
    Every disclosed client is audited.
    """
    opp = repo.get_opportunity(session, opportunity_id)
    if opp is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="opportunity not found")
    ensure_centre(principal, opp.centre)
    cache: ProfileCache = request.app.state.profile_cache
    clients = cache.resolve(session, repo.shareable_client_versions(session, opp.centre))
    response = rank_candidates(opp, clients, req, snapshot, date.today())
    repo.write_audit(session, actor_of(principal), [c.client_id for c in response.data], "candidates")
    session.commit()
    metrics.candidates.inc()
    if response.model.fallback:
        metrics.fallback_answers.inc()
    return response
