"""PUT / GET / DELETE /v1/clients/{client_id} and its access log (counsellors of the client's centre)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from features.records import ClientId
from service.auth import ensure_centre
from service.deps import Counsellor, ImpressionsDep, ProfileCacheDep, SessionDep, actor_of
from service.errors import FieldError
from service.schemas import (
    ERROR_RESPONSES,
    NOT_FOUND,
    AccessLogResponse,
    ClientPutRequest,
    ClientResponse,
    DeletedResponse,
)
from service.storage import repositories as repo
from service.subject_rights import client_access_log

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
def delete_client(
    client_id: ClientId,
    principal: Counsellor,
    session: SessionDep,
    profiles: ProfileCacheDep,
    impressions: ImpressionsDep,
) -> DeletedResponse:
    """Erase a client: profile, audit attributes and impressions are deleted and feedback events are unlinked."""
    centre = repo.client_centre(session, client_id)
    if centre is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="client not found")
    ensure_centre(principal, centre)
    impressions.writer.flush()  # queued impressions of this client are stored first, so the erasure removes them
    erased = repo.delete_client(session, client_id) or {}
    repo.write_audit(session, actor_of(principal), [client_id], "erasure")
    session.commit()
    impressions.writer.forget(client_id)  # and any queued while it ran
    profiles.forget(client_id)
    return DeletedResponse(id=client_id, feedback_unlinked=erased.get("feedback_events", 0))


@router.get(
    "/{client_id}/access-log",
    operation_id="listClientAccessLog",
    response_model=AccessLogResponse,
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def get_access_log(
    client_id: ClientId,
    principal: Counsellor,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AccessLogResponse:
    """Who used the client's data, when and for what purpose (from the audit log), newest first.

    For the client's right of access (GDPR Art. 15). Counsellors of the client's centre and admins; the read is
    itself audited (purpose ``access_log``).
    """
    return client_access_log(session, principal, client_id, limit=limit, offset=offset)
