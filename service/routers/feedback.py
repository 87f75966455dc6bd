"""POST /v1/feedback: decisions on suggestions and outcomes, idempotent by event id."""

from __future__ import annotations

from fastapi import APIRouter, Body, HTTPException, Response, status

from service.auth import ensure_centre
from service.deps import ImpressionsDep, MetricsDep, SessionDep, StaffForFeedback
from service.schemas import ERROR_RESPONSES, FeedbackRequest, FeedbackResponse
from service.storage import repositories as repo

router = APIRouter(prefix="/v1", tags=["feedback"])

_EXAMPLES = {
    "decision": {
        "summary": "A counsellor's decision",
        "value": {
            "event_id": "evt-2025-000001",
            "type": "decision",
            "client_id": "c-0001",
            "opportunity_id": "hel-tr-0001",
            "decision": "rejected",
            "reason_code": "timing",
            "rank_shown": 2,
            "impression_id": "5f0c6a2e9b7d4c1a8e3f2b6d9c0a1e47",
            "occurred_at": "2025-09-02T10:15:00Z",
        },
    },
    "outcome": {
        "summary": "An outcome",
        "value": {
            "event_id": "evt-2025-000002",
            "type": "outcome",
            "client_id": "c-0001",
            "opportunity_id": "hel-tr-0001",
            "outcome": "started",
            "occurred_at": "2025-10-01T08:00:00Z",
        },
    },
}


@router.post(
    "/feedback",
    operation_id="recordFeedback",
    response_model=FeedbackResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        **ERROR_RESPONSES,
        200: {"model": FeedbackResponse, "description": "Replay of an event already stored"},
        409: {"description": "The event id exists with a different body"},
    },
)
def post_feedback(
    event: FeedbackRequest = Body(openapi_examples=_EXAMPLES),  # type: ignore[arg-type]
    *,
    principal: StaffForFeedback,
    session: SessionDep,
    metrics: MetricsDep,
    impressions: ImpressionsDep,
    response: Response,
) -> FeedbackResponse:
    """Record a decision (accepted / rejected + reason) or an outcome; committed before the answer.

    The same event id with the same body answers 200 with the stored result; with a different body, 409. An
    event may name the `impression_id` of the ranking that showed the item; it must be an impression that showed
    this client and opportunity (else 422 on `body.impression_id`).
    """
    centre = repo.client_centre(session, event.client_id)
    if centre is not None and principal.role == "counsellor":
        ensure_centre(principal, centre)
    if principal.role == "coordinator":
        opp_centre = repo.opportunity_centre(session, event.opportunity_id)
        if opp_centre is not None:
            ensure_centre(principal, opp_centre)
    if event.impression_id is not None:
        impressions.check_feedback(session, event.impression_id, event.client_id, event.opportunity_id)
    result = repo.record_feedback(session, event, recorded_by=principal.subject)
    metrics.feedback.labels(status=result.status).inc()
    if result.status == "conflict":
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail="event_id already used for a different event")
    session.commit()
    if result.status == "duplicate":
        response.status_code = status.HTTP_200_OK
    return FeedbackResponse(event_id=result.event_id, status=result.status, received_at=result.received_at)
