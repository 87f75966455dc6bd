"""POST /v1/suggestions: what next for this client, and why."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, HTTPException, status

from service.auth import ensure_centre
from service.deps import Counsellor, MetricsDep, SessionDep, SnapshotDep, actor_of
from service.schemas import ERROR_RESPONSES, NOT_FOUND, SuggestionsRequest, SuggestionsResponse
from service.storage import repositories as repo
from service.suggest import suggest

router = APIRouter(prefix="/v1", tags=["suggestions"])


@router.post(
    "/suggestions",
    operation_id="createSuggestions",
    response_model=SuggestionsResponse,
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def post_suggestions(
    req: SuggestionsRequest, principal: Counsellor, session: SessionDep, snapshot: SnapshotDep, metrics: MetricsDep
) -> SuggestionsResponse:
    """Top-k opportunities per kind for an inline or stored client, with reasons, gaps, exclusions and paths.

    The client (stored or inline) must belong to the caller's centre and have consented to matching; every
    use is audited (purpose ``suggestions`` for a stored client, ``suggestions_inline`` for an inline profile).
    """
    if req.client_id is not None:
        client = repo.get_client(session, req.client_id)
        if client is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="client not found")
        ensure_centre(principal, client.centre)
        if not client.consent.matching:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="client has not consented to matching")
        repo.write_audit(session, actor_of(principal), [client.client_id], "suggestions")
        session.commit()
    else:
        assert req.client is not None
        client = req.client
        ensure_centre(principal, client.centre)
        if not client.consent.matching:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="client has not consented to matching")
        repo.write_audit(session, actor_of(principal), [client.client_id], "suggestions_inline")
        session.commit()
    response = suggest(client, req, snapshot, date.today())
    for group in response.suggestions:
        metrics.suggestions.labels(kind=group.kind).inc()
    if response.model.fallback:
        metrics.fallback_answers.inc()
    return response
