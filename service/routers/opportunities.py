"""PUT / GET / DELETE /v1/opportunities/{id} and GET /v1/opportunities: the catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from features.records import Kind, OpportunityId
from service.auth import ensure_centre
from service.coding import is_draft, propose_opportunity
from service.deps import AnyUser, Coordinator, SessionDep, get_coder
from service.errors import FieldError
from service.schemas import (
    ERROR_RESPONSES,
    NOT_FOUND,
    DeletedResponse,
    OpportunityIn,
    OpportunityList,
    OpportunityProposal,
    OpportunityResponse,
)
from service.storage import repositories as repo

router = APIRouter(prefix="/v1/opportunities", tags=["opportunities"])


@router.get("", operation_id="listOpportunities", response_model=OpportunityList, responses=ERROR_RESPONSES)
def list_opportunities(
    _principal: AnyUser,
    session: SessionDep,
    kind: Kind | None = None,
    centre: Annotated[str | None, Query(pattern=r"^[a-z_]{2,32}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> OpportunityList:
    """A page of the catalogue, filtered by kind and centre."""
    data, total = repo.list_opportunities(session, kind=kind, centre=centre, limit=limit, offset=offset)
    return OpportunityList(data=data, count=len(data), total=total)


@router.put(
    "/{opportunity_id}",
    operation_id="upsertOpportunity",
    response_model=OpportunityResponse | OpportunityProposal,
    responses={**ERROR_RESPONSES, 201: {"model": OpportunityResponse}},
)
def put_opportunity(
    opportunity_id: OpportunityId,
    body: OpportunityIn,
    principal: Coordinator,
    session: SessionDep,
    response: Response,
    request: Request,
) -> OpportunityResponse | OpportunityProposal:
    """Create or replace an opportunity of the caller's centre, or propose codes for a draft.

    With ``coding: {"text": ...}`` and ``confirm: false`` in place of ``occupation`` and ``required_skills``,
    the answer (200) proposes the ESCO occupation and its skills and nothing is stored: the coordinator confirms
    the codes and PUTs the record with them. A stored record always holds explicit codes.
    """
    if body.opportunity_id != opportunity_id:
        raise FieldError("body.opportunity_id", "must equal the id in the path")
    ensure_centre(principal, body.centre)
    existing = repo.opportunity_centre(session, opportunity_id)
    if existing is not None:
        ensure_centre(principal, existing)
    if is_draft(body):
        session.rollback()
        return propose_opportunity(get_coder(request), body)
    record = body.record()
    created = repo.upsert_opportunity(session, record)
    session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return OpportunityResponse(opportunity=record, created=created)


@router.get(
    "/{opportunity_id}",
    operation_id="getOpportunity",
    response_model=OpportunityResponse,
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def get_opportunity(opportunity_id: OpportunityId, _principal: AnyUser, session: SessionDep) -> OpportunityResponse:
    """One opportunity."""
    opp = repo.get_opportunity(session, opportunity_id)
    if opp is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="opportunity not found")
    return OpportunityResponse(opportunity=opp)


@router.delete(
    "/{opportunity_id}",
    operation_id="deleteOpportunity",
    response_model=DeletedResponse,
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def delete_opportunity(opportunity_id: OpportunityId, principal: Coordinator, session: SessionDep) -> DeletedResponse:
    """Remove an opportunity of the caller's centre from the catalogue."""
    centre = repo.opportunity_centre(session, opportunity_id)
    if centre is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="opportunity not found")
    ensure_centre(principal, centre)
    repo.delete_opportunity(session, opportunity_id)
    session.commit()
    return DeletedResponse(id=opportunity_id)
