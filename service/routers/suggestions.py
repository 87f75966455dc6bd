"""POST /v1/suggestions: what next for this client, and why."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter

from service.deps import Counsellor, ImpressionsDep, MetricsDep, SessionDep, SnapshotDep
from service.schemas import ERROR_RESPONSES, NOT_FOUND, SuggestionsRequest, SuggestionsResponse
from service.suggest import suggestions_for

router = APIRouter(prefix="/v1", tags=["suggestions"])


@router.post(
    "/suggestions",
    operation_id="createSuggestions",
    response_model=SuggestionsResponse,
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def post_suggestions(
    req: SuggestionsRequest,
    principal: Counsellor,
    session: SessionDep,
    snapshot: SnapshotDep,
    metrics: MetricsDep,
    impressions: ImpressionsDep,
) -> SuggestionsResponse:
    """Top-k opportunities per kind for an inline or stored client, with reasons, gaps, exclusions and paths.

    The client (stored or inline) must belong to the caller's centre and have consented to matching; every
    use is audited (purpose ``suggestions`` for a stored client, ``suggestions_inline`` for an inline profile).
    The answer's `impression_id` names the shown slate (stored per item with position and propensity); with
    exploration on, places 4 and below may be sampled (`explored: true`).
    """
    return suggestions_for(req, principal, session, snapshot, metrics, date.today(), impressions)
