"""PUT / GET / DELETE /v1/clients/{client_id}: profiles and consents (counsellors of the client's centre)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from features.records import ClientId
from service.auth import ensure_centre
from service.deps import Counsellor, SessionDep, actor_of
from service.errors import FieldError
from service.schemas import ERROR_RESPONSES, NOT_FOUND, ClientPutRequest, ClientResponse, DeletedResponse
from service.storage import repositories as repo

router = APIRouter(prefix="/v1/clients", tags=["clients"])


@router.put(
    "/{client_id}",
    operation_id="upsertClient",
    response_model=ClientResponse,
    responses={**ERROR_RESPONSES, 201: {"model": ClientResponse}},
)
def put_client(
    client_id: ClientId, body: ClientPutRequest, principal: Counsellor, session: SessionDep, response: Response
) -> ClientResponse:
    """Create or replace a client's profile and consents (and audit-only attributes, which are never returned)."""
    if body.profile.client_id != client_id:
        raise FieldError("body.profile.client_id", "must equal the client id in the path")
    if body.audit is not None and body.audit.client_id != client_id:
        raise FieldError("body.audit.client_id", "must equal the client id in the path")
    ensure_centre(principal, body.profile.centre)
    existing = repo.client_centre(session, client_id)
    if existing is not None:
        ensure_centre(principal, existing)
    created = repo.upsert_client(session, body.profile, body.audit)
    session.commit()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    row = repo.get_client_row(session, client_id)
    return ClientResponse(
        profile=body.profile, created=created, updated_at=repo.as_utc(row.updated_at) if row else None
    )


@router.get(
    "/{client_id}", operation_id="getClient", response_model=ClientResponse, responses={**ERROR_RESPONSES, **NOT_FOUND}
)
def get_client(client_id: ClientId, principal: Counsellor, session: SessionDep) -> ClientResponse:
    """A stored client's profile and consents (audited read)."""
    row = repo.get_client_row(session, client_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="client not found")
    ensure_centre(principal, row.centre)
    profile = repo.get_client(session, client_id)
    assert profile is not None
    repo.write_audit(session, actor_of(principal), [client_id], "client_read")
    session.commit()
    return ClientResponse(profile=profile, updated_at=repo.as_utc(row.updated_at))


@router.delete(
    "/{client_id}",
    operation_id="deleteClient",
    response_model=DeletedResponse,
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def delete_client(client_id: ClientId, principal: Counsellor, session: SessionDep, request: Request) -> DeletedResponse:
    """Erase a client: profile and audit attributes are deleted and feedback events are unlinked."""
    centre = repo.client_centre(session, client_id)
    if centre is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="client not found")
    ensure_centre(principal, centre)
    n_feedback = len(repo.feedback_for_clients(session, [client_id]))
    repo.delete_client(session, client_id)
    repo.write_audit(session, actor_of(principal), [client_id], "erasure")
    session.commit()
    request.app.state.profile_cache.forget(client_id)
    return DeletedResponse(id=client_id, feedback_unlinked=n_feedback)
