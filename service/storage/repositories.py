"""Repository functions over the service store: clients, audit attributes, opportunities, feedback, audit log."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from features.events import DecisionEvent, OutcomeEvent
from features.records import AuditAttributes, ClientProfile, Opportunity
from service.storage.retention import erase_client
from service.storage.tables import (
    AuditAttributeRow,
    AuditLogRow,
    Base,
    ClientRow,
    FeedbackRow,
    ModelEventRow,
    OpportunityRow,
    StoreVersionRow,
    utcnow,
)

FeedbackEvent = DecisionEvent | OutcomeEvent
_BULK_CHUNK = 500


# ----------------------------------------------------------------------------------------------- clients
def _client_values(profile: ClientProfile) -> dict[str, Any]:
    return {
        "client_id": profile.client_id,
        "centre": profile.centre,
        "profile": profile.model_dump(mode="json"),
        "consent_matching": profile.consent.matching,
        "consent_share_with_coordinators": profile.consent.share_with_coordinators,
        "consent_model_training": profile.consent.model_training,
    }


def _audit_values(audit: AuditAttributes) -> dict[str, Any]:
    return {
        "client_id": audit.client_id,
        "gender": audit.gender,
        "mother_tongue": audit.mother_tongue,
        "country_of_origin": audit.country_of_origin,
    }


def client_centre(session: Session, client_id: str) -> str | None:
    """The centre of a stored client, ``None`` when unknown (no personal data read)."""
    return session.scalar(select(ClientRow.centre).where(ClientRow.client_id == client_id))


def upsert_client(session: Session, profile: ClientProfile, audit: AuditAttributes | None = None) -> bool:
    """Insert or replace a client (and its audit attributes when given). Returns True when created."""
    created = upsert_clients(session, [profile], [audit] if audit is not None else [])
    return created == 1


def upsert_clients(session: Session, profiles: Sequence[ClientProfile], audits: Sequence[AuditAttributes] = ()) -> int:
    """Bulk insert-or-update clients and audit attributes (idempotent). Returns the number of new clients."""
    if not profiles and not audits:
        return 0
    ids = [p.client_id for p in profiles]
    existing: set[str] = set()
    centres = {p.centre for p in profiles}
    for chunk in _chunks(ids):
        for cid, centre in session.execute(
            select(ClientRow.client_id, ClientRow.centre).where(ClientRow.client_id.in_(chunk))
        ):
            existing.add(str(cid))
            centres.add(str(centre))  # a client moving between centres changes both pools
    now = utcnow()
    rows = [{**_client_values(p), "created_at": now, "updated_at": now} for p in profiles]
    _upsert(session, ClientRow, rows, key="client_id", keep=("created_at",))
    _upsert(session, AuditAttributeRow, [_audit_values(a) for a in audits], key="client_id")
    bump_versions(session, [clients_version_name(c) for c in sorted(centres)])  # audit attributes never rank
    return len(set(ids) - existing)


def get_client(session: Session, client_id: str) -> ClientProfile | None:
    """A stored client's profile (validated), ``None`` when unknown."""
    row = session.get(ClientRow, client_id)
    return None if row is None else ClientProfile.model_validate(row.profile, strict=False)


def get_client_row(session: Session, client_id: str) -> ClientRow | None:
    """The stored row (with ``updated_at``), ``None`` when unknown."""
    return session.get(ClientRow, client_id)


def delete_client(session: Session, client_id: str) -> dict[str, int] | None:
    """Erase a client from every table of the store (see ``service/storage/retention.py``).

    Profile and audit attributes are deleted, feedback is unlinked, audit-log rows are kept (the record of
    processing; retention removes them). Returns the rows changed per table, ``None`` when the client is unknown.
    """
    centre = client_centre(session, client_id)
    if centre is None:
        return None
    bump_versions(session, [clients_version_name(centre)])
    return erase_client(session, client_id)


def get_audit_attributes(session: Session, client_id: str) -> AuditAttributes | None:
    """Audit-only attributes of one client (for fairness audits only, never for ranking or API output)."""
    row = session.get(AuditAttributeRow, client_id)
    if row is None:
        return None
    return AuditAttributes(
        client_id=row.client_id,
        gender=row.gender,  # type: ignore[arg-type]
        mother_tongue=row.mother_tongue,
        country_of_origin=row.country_of_origin,
    )


def shareable_clients(session: Session, centre: str) -> list[ClientProfile]:
    """Clients of ``centre`` who consented both to matching and to sharing with coordinators."""
    rows = session.scalars(
        select(ClientRow.profile)
        .where(
            ClientRow.centre == centre,
            ClientRow.consent_share_with_coordinators.is_(True),
            ClientRow.consent_matching.is_(True),
        )
        .order_by(ClientRow.client_id)
    ).all()
    return [ClientProfile.model_validate(p, strict=False) for p in rows]


_POOL_VERSIONS: dict[tuple[str, str], tuple[tuple[int, str], list[tuple[str, datetime]]]] = {}
_POOL_VERSIONS_LOCK = threading.Lock()


def shareable_client_versions(session: Session, centre: str) -> list[tuple[str, datetime]]:
    """(id, updated_at) of the clients of ``centre`` who consented to matching and to sharing with coordinators.

    The answer is kept per database and centre together with the centre's change counter, and the same list
    object is returned while the counter is unchanged (one primary-key read instead of reading the pool).
    Callers must not modify it.
    """
    engine = session.get_bind().engine
    key = (f"{id(engine)}:{engine.url.render_as_string(hide_password=True)}", centre)
    version = clients_version(session, centre)
    with _POOL_VERSIONS_LOCK:
        hit = _POOL_VERSIONS.get(key)
    if hit is not None and hit[0] == version and version != (0, ""):
        return hit[1]
    found = _read_shareable_client_versions(session, centre)
    with _POOL_VERSIONS_LOCK:
        _POOL_VERSIONS[key] = (version, found)
    return found


def _read_shareable_client_versions(session: Session, centre: str) -> list[tuple[str, datetime]]:
    rows = session.execute(
        select(ClientRow.client_id, ClientRow.updated_at)
        .where(
            ClientRow.centre == centre,
            ClientRow.consent_share_with_coordinators.is_(True),
            ClientRow.consent_matching.is_(True),
        )
        .order_by(ClientRow.client_id)
    ).all()
    return [(str(cid), updated) for cid, updated in rows]


def client_profiles(session: Session, client_ids: Sequence[str]) -> dict[str, tuple[datetime, ClientProfile]]:
    """Validated profiles (with ``updated_at``) of the given clients, by id."""
    out: dict[str, tuple[datetime, ClientProfile]] = {}
    for chunk in _chunks(list(client_ids)):
        stmt = select(ClientRow.client_id, ClientRow.updated_at, ClientRow.profile).where(
            ClientRow.client_id.in_(chunk)
        )
        for cid, updated, profile in session.execute(stmt):
            out[str(cid)] = (updated, ClientProfile.model_validate(profile, strict=False))
    return out


def training_clients(session: Session) -> Iterable[ClientProfile]:
    """Clients who consented to model training (streamed in id order)."""
    stmt = (
        select(ClientRow.profile)
        .where(ClientRow.consent_model_training.is_(True))
        .order_by(ClientRow.client_id)
        .execution_options(yield_per=_BULK_CHUNK)
    )
    for profile in session.scalars(stmt):
        yield ClientProfile.model_validate(profile, strict=False)


def count_clients(session: Session) -> int:
    """Number of stored clients."""
    return int(session.scalar(select(func.count()).select_from(ClientRow)) or 0)


# ----------------------------------------------------------------------------------------- opportunities
def _opportunity_values(opp: Opportunity, now: datetime) -> dict[str, Any]:
    return {
        "opportunity_id": opp.opportunity_id,
        "centre": opp.centre,
        "kind": opp.kind,
        "record": opp.model_dump(mode="json"),
        "updated_at": now,
    }


def upsert_opportunity(session: Session, opp: Opportunity) -> bool:
    """Insert or replace one opportunity. Returns True when created."""
    return upsert_opportunities(session, [opp]) == 1


def upsert_opportunities(session: Session, opps: Sequence[Opportunity]) -> int:
    """Bulk insert-or-update opportunities (idempotent). Returns the number of new ones."""
    ids = [o.opportunity_id for o in opps]
    existing: set[str] = set()
    for chunk in _chunks(ids):
        existing.update(
            session.scalars(select(OpportunityRow.opportunity_id).where(OpportunityRow.opportunity_id.in_(chunk)))
        )
    now = utcnow()
    _upsert(session, OpportunityRow, [_opportunity_values(o, now) for o in opps], key="opportunity_id")
    if opps:
        bump_versions(session, [CATALOGUE_VERSION])
    return len(set(ids) - existing)


def get_opportunity(session: Session, opportunity_id: str) -> Opportunity | None:
    """One opportunity, ``None`` when unknown."""
    row = session.get(OpportunityRow, opportunity_id)
    return None if row is None else Opportunity.model_validate(row.record, strict=False)


def opportunity_centre(session: Session, opportunity_id: str) -> str | None:
    """The centre owning an opportunity, ``None`` when unknown."""
    return session.scalar(select(OpportunityRow.centre).where(OpportunityRow.opportunity_id == opportunity_id))


def delete_opportunity(session: Session, opportunity_id: str) -> bool:
    """Delete one opportunity. Returns False when unknown."""
    result = session.execute(delete(OpportunityRow).where(OpportunityRow.opportunity_id == opportunity_id))
    deleted = bool(getattr(result, "rowcount", 0))
    if deleted:
        bump_versions(session, [CATALOGUE_VERSION])
    return deleted


def list_opportunities(
    session: Session,
    *,
    kind: str | None = None,
    centre: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Opportunity], int]:
    """A page of opportunities filtered by kind and centre, and the total count of the filter."""
    stmt = select(OpportunityRow.record)
    count = select(func.count()).select_from(OpportunityRow)
    if kind is not None:
        stmt = stmt.where(OpportunityRow.kind == kind)
        count = count.where(OpportunityRow.kind == kind)
    if centre is not None:
        stmt = stmt.where(OpportunityRow.centre == centre)
        count = count.where(OpportunityRow.centre == centre)
    rows = session.scalars(stmt.order_by(OpportunityRow.opportunity_id).limit(limit).offset(offset)).all()
    total = int(session.scalar(count) or 0)
    return [Opportunity.model_validate(r, strict=False) for r in rows], total


def all_opportunities(session: Session) -> list[Opportunity]:
    """The whole catalogue in id order.

    Rows are streamed and validated one chunk at a time, so the decoded JSON of the whole catalogue never sits
    in memory next to the records (at 50k items that copy alone costs several hundred MB of resident memory).
    """
    stmt = (
        select(OpportunityRow.record)
        .order_by(OpportunityRow.opportunity_id)
        .execution_options(yield_per=_BULK_CHUNK, stream_results=True)
    )
    return [Opportunity.model_validate(r, strict=False) for r in session.scalars(stmt)]


def catalogue_fingerprint(session: Session) -> tuple[int, str]:
    """(version, time of change) of the catalogue: changes whenever an item is added, replaced or deleted.

    One primary-key read of the ``store_versions`` counter that every catalogue write bumps; a store without
    the counter row (written by other means) falls back to ``(count, newest update)``, a full scan.
    """
    found = store_version(session, CATALOGUE_VERSION)
    if found is not None:
        return found
    n, newest = session.execute(select(func.count(), func.max(OpportunityRow.updated_at))).one()
    return -int(n or 0), str(newest)


# ---------------------------------------------------------------------------------------- store versions
CATALOGUE_VERSION = "catalogue"


def clients_version_name(centre: str) -> str:
    """Name of the change counter of one centre's clients."""
    return f"clients:{centre}"


def store_version(session: Session, name: str) -> tuple[int, str] | None:
    """(version, time of change) of one counter, ``None`` when it was never bumped."""
    row = session.execute(
        select(StoreVersionRow.version, StoreVersionRow.changed_at).where(StoreVersionRow.name == name)
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def clients_version(session: Session, centre: str) -> tuple[int, str]:
    """(version, time of change) of one centre's clients; ``(0, "")`` before the first write."""
    return store_version(session, clients_version_name(centre)) or (0, "")


def bump_versions(session: Session, names: Sequence[str]) -> None:
    """Increment change counters (creating missing ones) in the caller's transaction."""
    if not names:
        return
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    tbl = StoreVersionRow.__table__
    stmt = insert_fn(tbl).values([{"name": n, "version": 1, "changed_at": now} for n in names])  # type: ignore[arg-type]
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"version": tbl.c.version + 1, "changed_at": stmt.excluded.changed_at},  # type: ignore[attr-defined]
        )
    )


def as_utc(value: datetime) -> datetime:
    """Timezone-aware UTC (SQLite returns naive datetimes for ``DateTime(timezone=True)``)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------- feedback
@dataclass(frozen=True)
class FeedbackResult:
    """Outcome of recording one feedback event."""

    status: Literal["created", "duplicate", "conflict"]
    event_id: str
    received_at: datetime


def feedback_hash(event: FeedbackEvent) -> str:
    """SHA-256 of the canonical JSON of an event (same event id + same hash = an idempotent replay)."""
    body = json.dumps(event.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def record_feedback(session: Session, event: FeedbackEvent, *, recorded_by: str) -> FeedbackResult:
    """Store one feedback event unless its id exists: replay of the same body is a duplicate, else a conflict."""
    digest = feedback_hash(event)
    existing = session.get(FeedbackRow, event.event_id)
    if existing is not None:
        status: Literal["duplicate", "conflict"] = "duplicate" if existing.body_sha256 == digest else "conflict"
        return FeedbackResult(status, existing.event_id, as_utc(existing.received_at))
    payload = event.model_dump(mode="json")
    row = FeedbackRow(
        event_id=event.event_id,
        type=event.type,
        client_id=event.client_id,
        opportunity_id=event.opportunity_id,
        body_sha256=digest,
        payload=payload,
        occurred_at=event.occurred_at,
        received_at=utcnow(),
        recorded_by=recorded_by,
    )
    session.add(row)
    session.flush()
    return FeedbackResult("created", row.event_id, row.received_at)


def feedback_for_clients(session: Session, client_ids: Sequence[str]) -> list[FeedbackRow]:
    """Feedback rows linked to the given clients."""
    rows: list[FeedbackRow] = []
    for chunk in _chunks(list(client_ids)):
        rows.extend(session.scalars(select(FeedbackRow).where(FeedbackRow.client_id.in_(chunk))))
    return rows


def count_feedback(session: Session) -> int:
    """Number of stored feedback events."""
    return int(session.scalar(select(func.count()).select_from(FeedbackRow)) or 0)


# --------------------------------------------------------------------------------------------- audit log
@dataclass(frozen=True)
class Actor:
    """Who reads personal data (from the verified token)."""

    subject: str
    role: str
    centre: str | None


def write_audit(session: Session, actor: Actor, client_ids: Iterable[str | None], purpose: str) -> int:
    """Add one audit row per client read (the caller commits before answering). Returns the rows added."""
    now = utcnow()
    rows = [
        {
            "at": now,
            "actor": actor.subject,
            "role": actor.role,
            "centre": actor.centre,
            "client_id": cid,
            "purpose": purpose,
        }
        for cid in client_ids
    ]
    if rows:
        session.execute(insert(AuditLogRow), rows)
    return len(rows)


def access_log(session: Session, client_id: str, *, limit: int, offset: int) -> tuple[list[AuditLogRow], int]:
    """A page of one client's audit rows, newest first, and the number of rows in all."""
    stmt = (
        select(AuditLogRow)
        .where(AuditLogRow.client_id == client_id)
        .order_by(AuditLogRow.at.desc(), AuditLogRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = session.scalar(select(func.count()).select_from(AuditLogRow).where(AuditLogRow.client_id == client_id))
    return list(session.scalars(stmt)), int(total or 0)


def audit_rows(session: Session, client_id: str | None = None) -> list[AuditLogRow]:
    """Audit rows, optionally for one client, oldest first."""
    stmt = select(AuditLogRow).order_by(AuditLogRow.id)
    if client_id is not None:
        stmt = stmt.where(AuditLogRow.client_id == client_id)
    return list(session.scalars(stmt))


# ------------------------------------------------------------------------------------------ model events
def record_model_event(
    session: Session,
    event: str,
    *,
    name: str,
    version: str | None,
    alias: str | None,
    fallback: bool,
    detail: str | None = None,
) -> None:
    """Log one model lifecycle event."""
    session.add(
        ModelEventRow(
            event=event, name=name, version=version, alias=alias, fallback=fallback, detail=(detail or "")[:500]
        )
    )


# --------------------------------------------------------------------------------------------- internals
def _chunks(items: Sequence[str], size: int = _BULK_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _upsert(
    session: Session, table: type[Base], rows: list[dict[str, Any]], *, key: str, keep: tuple[str, ...] = ()
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE for SQLite and PostgreSQL, in chunks."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    tbl = table.__table__
    for start in range(0, len(rows), _BULK_CHUNK):
        stmt = insert_fn(tbl).values(rows[start : start + _BULK_CHUNK])  # type: ignore[arg-type]
        updates = {c: stmt.excluded[c] for c in rows[0] if c != key and c not in keep}
        session.execute(stmt.on_conflict_do_update(index_elements=[key], set_=updates))


def touch_updated(session: Session, client_id: str) -> None:
    """Mark a client as updated now (used when only consents change)."""
    session.execute(update(ClientRow).where(ClientRow.client_id == client_id).values(updated_at=utcnow()))
    centre = client_centre(session, client_id)
    if centre is not None:
        bump_versions(session, [clients_version_name(centre)])
