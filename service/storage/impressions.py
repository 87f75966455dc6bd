"""Repository functions over the impressions table (the slates the service showed, one row per shown item).

Kept beside ``repositories.py`` (which is at its size limit) with the same style: plain functions taking a
session, the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from service.storage.tables import ImpressionRow

_CHUNK = 500


def insert_impressions(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert impression rows (dicts of :class:`ImpressionRow` columns) in chunks; returns the rows added."""
    for start in range(0, len(rows), _CHUNK):
        session.execute(insert(ImpressionRow), [dict(r) for r in rows[start : start + _CHUNK]])
    return len(rows)


def impression_shows(session: Session, impression_id: str, client_id: str, opportunity_id: str) -> bool | None:
    """Whether impression ``impression_id`` showed this client-opportunity pair; None for an unknown impression."""
    stmt = select(ImpressionRow.client_id, ImpressionRow.opportunity_id).where(
        ImpressionRow.impression_id == impression_id
    )
    rows = session.execute(stmt).all()
    if not rows:
        return None
    return any(c == client_id and o == opportunity_id for c, o in rows)


def impressions_for_clients(session: Session, client_ids: Sequence[str]) -> list[ImpressionRow]:
    """Impression rows naming the given clients, in order of slate and position."""
    out: list[ImpressionRow] = []
    ids = list(client_ids)
    for start in range(0, len(ids), _CHUNK):
        stmt = select(ImpressionRow).where(ImpressionRow.client_id.in_(ids[start : start + _CHUNK]))
        out.extend(session.scalars(stmt))
    out.sort(key=lambda r: (r.impression_id, r.position))
    return out


def count_impressions(session: Session, client_id: str | None = None) -> int:
    """Stored impression rows (of one client when given)."""
    stmt = select(func.count()).select_from(ImpressionRow)
    if client_id is not None:
        stmt = stmt.where(ImpressionRow.client_id == client_id)
    return int(session.scalar(stmt) or 0)
