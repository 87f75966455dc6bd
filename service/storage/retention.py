"""Personal data table by table: what erasure does with a client's rows, and how long rows are kept.

Every table of the store is listed in :data:`DATA_MAP` (a test fails when one is missing), so a new table
decides both when it is added (the impressions table registers with one line).

Erasure (``DELETE /v1/clients/{id}``) walks the map: ``delete`` removes the client's rows, ``unlink`` removes
the link to the person and keeps the rest, ``keep`` keeps the rows on purpose (the audit log is the record of
processing; retention removes it), ``none`` marks tables without client data. Retention (``polku retention``)
deletes or de-identifies rows older than the table's ``POLKU_RETENTION_*`` period; the dry run counts exactly
the rows the real run changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, delete, func, select, update
from sqlalchemy.orm import Session

from service.settings import Settings
from service.storage.tables import Base, utcnow

Erasure = Literal["delete", "unlink", "keep", "none"]
Action = Literal["delete", "deidentify"]
Deidentify = Callable[[Session, Table, ColumnElement[bool], datetime, str | None], int]
_CHUNK = 500


@dataclass(frozen=True)
class Retention:
    """Rows whose ``column`` is older than the period in ``Settings.<period>`` (days) are deleted or de-identified.

    Attributes:
        column: the time column the period counts from.
        period: name of the :class:`~service.settings.Settings` field holding the period in days.
        action: ``delete`` or ``deidentify`` (the table's :attr:`TablePolicy.deidentify` function).
    """

    column: str
    period: str
    action: Action


@dataclass(frozen=True)
class TablePolicy:
    """One table's personal-data handling.

    Attributes:
        table: table name.
        erasure: what erasing a client does to the table's rows of that client.
        retention: how long rows are kept, ``None`` when no period applies.
        deidentify: removes the link to people from the selected rows (for ``unlink`` and ``deidentify``).
        client_column: the column naming the client.
    """

    table: str
    erasure: Erasure
    retention: Retention | None = None
    deidentify: Deidentify | None = None
    client_column: str = "client_id"


def _feedback_id(event_id: str) -> str:
    return "deid-" + hashlib.sha256(b"polku-feedback:" + event_id.encode()).hexdigest()[:32]


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def deidentify_feedback(
    session: Session, table: Table, where: ColumnElement[bool], now: datetime, erased_client: str | None
) -> int:
    """Remove the link to people from up to 500 feedback rows matching ``where``; returns the rows changed.

    The client id goes (column and payload), and the body hash is recomputed without it (a hash of the
    original body could be matched against guessed ids). On erasure (``erased_client``) the event id is
    replaced only if it contains the client id, so replays of the client's other events stay recognisable;
    by retention it is always replaced, who recorded the event is removed, and ``deidentified_at`` is set.
    Changed rows no longer match ``where`` (no client id; de-identified), so callers repeat until 0.
    """
    c = table.c
    rows = session.execute(select(c.event_id, c.payload).where(where).order_by(c.event_id).limit(_CHUNK)).all()
    for event_id, stored in rows:
        payload = {k: v for k, v in dict(stored).items() if k != "client_id"}
        values: dict[str, Any] = {"client_id": None}
        if erased_client is None or erased_client in event_id:
            values["event_id"] = payload["event_id"] = _feedback_id(event_id)
        if erased_client is None:
            values.update(recorded_by=None, deidentified_at=now)
        values.update(payload=payload, body_sha256=_digest(payload))
        session.execute(update(table).where(c.event_id == event_id).values(**values))
    return len(rows)


DATA_MAP: tuple[TablePolicy, ...] = (
    TablePolicy("clients", "delete"),
    TablePolicy("audit_attributes", "delete"),
    TablePolicy(
        "feedback_events",
        "unlink",
        Retention("received_at", "retention_feedback_days", "deidentify"),
        deidentify=deidentify_feedback,
    ),
    TablePolicy("audit_log", "keep", Retention("at", "retention_audit_days", "delete")),
    TablePolicy("impressions", "delete", Retention("shown_at", "retention_impressions_days", "delete")),
    TablePolicy("opportunities", "none", client_column=""),
    TablePolicy("model_events", "none", client_column=""),
    TablePolicy("store_versions", "none", client_column=""),
    TablePolicy("price_runs", "none", client_column=""),  # counts and totals only (polku allocate)
    TablePolicy("item_prices", "none", client_column=""),
)


def policies() -> dict[str, TablePolicy]:
    """The data map by table name."""
    return {p.table: p for p in DATA_MAP}


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


# --------------------------------------------------------------------------------------------------- erasure
def erase_client(session: Session, client_id: str) -> dict[str, int]:
    """Apply every table's erasure to one client (in the caller's transaction); rows changed per table.

    Tables are visited children first, so foreign keys never block a delete.
    """
    by_name = policies()
    changed: dict[str, int] = {}
    for table in reversed(Base.metadata.sorted_tables):
        policy = by_name[table.name]
        if policy.erasure in ("keep", "none"):
            continue
        where = table.c[policy.client_column] == client_id
        if policy.erasure == "delete":
            result = session.execute(delete(table).where(where))
            changed[table.name] = int(getattr(result, "rowcount", 0) or 0)
            continue
        assert policy.deidentify is not None, f"{table.name}: 'unlink' needs a deidentify function"
        total = 0
        while n := policy.deidentify(session, table, where, utcnow(), client_id):
            total += n
        changed[table.name] = total
    return changed


# ------------------------------------------------------------------------------------------------- retention
@dataclass(frozen=True)
class RetentionItem:
    """What retention does (or would do) to one table."""

    table: str
    action: Action
    days: int
    cutoff: datetime
    rows: int


def _due(policy: TablePolicy, settings: Settings, now: datetime) -> tuple[Table, ColumnElement[bool], int, datetime]:
    assert policy.retention is not None
    table = _table(policy.table)
    days = int(getattr(settings, policy.retention.period))
    cutoff = now - timedelta(days=days)
    where = table.c[policy.retention.column] < cutoff
    if policy.retention.action == "deidentify" and "deidentified_at" in table.c:
        where = where & table.c.deidentified_at.is_(None)
    return table, where, days, cutoff


def plan_retention(session: Session, settings: Settings, now: datetime | None = None) -> list[RetentionItem]:
    """Rows that retention would delete or de-identify now, per table (the dry run)."""
    now = now or utcnow()
    items = []
    for policy in DATA_MAP:
        if policy.retention is None:
            continue
        table, where, days, cutoff = _due(policy, settings, now)
        rows = int(session.scalar(select(func.count()).select_from(table).where(where)) or 0)
        items.append(RetentionItem(policy.table, policy.retention.action, days, cutoff, rows))
    return items


def apply_retention(session: Session, settings: Settings, now: datetime | None = None) -> list[RetentionItem]:
    """Delete or de-identify the rows of :func:`plan_retention` (in the caller's transaction); rows changed."""
    now = now or utcnow()
    items = []
    for policy in DATA_MAP:
        if policy.retention is None:
            continue
        table, where, days, cutoff = _due(policy, settings, now)
        if policy.retention.action == "delete":
            result = session.execute(delete(table).where(where))
            rows = int(getattr(result, "rowcount", 0) or 0)
        else:
            assert policy.deidentify is not None, f"{policy.table}: 'deidentify' needs a deidentify function"
            rows = 0
            while n := policy.deidentify(session, table, where, now, None):
                rows += n
        items.append(RetentionItem(policy.table, policy.retention.action, days, cutoff, rows))
    return items


def retention_periods(items: Sequence[RetentionItem]) -> str:
    """One line per table: action, period, cutoff and rows (for the CLI)."""
    return "\n".join(
        f"{i.table}: {i.action} {i.rows} rows older than {i.days} days (before {i.cutoff:%Y-%m-%d %H:%M} UTC)"
        for i in items
    )
