"""Data-subject rights: a client's access log (who used the data, when, for what purpose)."""

from __future__ import annotations

from typing import Final

from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from service.auth import Principal, ensure_centre
from service.schemas import AccessLogEntry, AccessLogResponse
from service.storage import repositories as repo
from service.storage.repositories import Actor

ACCESS_LOG_PURPOSE: Final = "access_log"
PURPOSES: Final[dict[str, str]] = {
    "suggestions": "suggestions were computed from the stored profile",
    "suggestions_inline": "suggestions were computed from a profile sent by a counsellor",
    "candidates": "the client was listed as a candidate for a vacancy or work trial",
    "client_read": "the stored profile was read",
    "erasure": "the profile was erased",
    ACCESS_LOG_PURPOSE: "this access log was read",
}


def client_access_log(
    session: Session, principal: Principal, client_id: str, *, limit: int, offset: int
) -> AccessLogResponse:
    """A page of the client's access log, newest first; the read itself is audited.

    Counsellors read the log of their centre's clients. Admins may also read the log of an erased client, whose
    audit rows outlive the profile until retention removes them.

    Raises:
        HTTPException: 404 for an unknown client (for admins: when no audit row names it either), 403 for a
            client of another centre.
    """
    centre = repo.client_centre(session, client_id)
    rows, total = repo.access_log(session, client_id, limit=limit, offset=offset)
    if centre is None and (principal.role != "admin" or total == 0):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="client not found")
    if centre is not None:
        ensure_centre(principal, centre)
    data = [
        AccessLogEntry(
            at=repo.as_utc(row.at),
            actor=row.actor,
            role=row.role,
            centre=row.centre,
            purpose=row.purpose,
            description=PURPOSES.get(row.purpose, row.purpose),
        )
        for row in rows
    ]
    repo.write_audit(
        session, Actor(principal.subject, principal.role, principal.centre), [client_id], ACCESS_LOG_PURPOSE
    )
    session.commit()
    return AccessLogResponse(client_id=client_id, count=len(data), total=total, data=data)
