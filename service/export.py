"""De-identified export of training data: consenting clients only, salted-hash ids, no audit attributes.

The file is the contract between the service and training (``training.feedback`` reads it). JSON lines:

* ``{"kind": "meta", "format": "polku-training-export", "version": 1, "exported_at": ...}`` first;
* ``{"kind": "client", "profile": <ClientProfile JSON, client_id replaced by a pseudonym>}``;
* ``{"kind": "feedback", "event": <DecisionEvent | OutcomeEvent JSON, client_id and event_id replaced>,
  "opportunity_kind": "training" | "work_trial" | "vacancy" | null}`` in order of ``occurred_at``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.storage import repositories as repo
from service.storage.tables import FeedbackRow, OpportunityRow

EXPORT_FORMAT: Final = "polku-training-export"
EXPORT_VERSION: Final = 1
_CHUNK: Final = 500


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    clients: int
    feedback: int
    path: Path


def pseudonym(client_id: str, salt: bytes) -> str:
    """A salted hash standing in for a client id (valid as a ``ClientId``; not linkable without the salt)."""
    return "anon-" + hashlib.sha256(salt + client_id.encode()).hexdigest()[:24]


def event_pseudonym(event_id: str, salt: bytes) -> str:
    """A salted hash standing in for an event id (case tools may build event ids from client ids)."""
    return "evt-" + hashlib.sha256(salt + b"event:" + event_id.encode()).hexdigest()[:24]


def _opportunity_kinds(session: Session, opportunity_ids: Iterable[str]) -> dict[str, str]:
    """Opportunity id -> kind for the stored ones among ``opportunity_ids``."""
    ids = sorted(set(opportunity_ids))
    out: dict[str, str] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        stmt = select(OpportunityRow.opportunity_id, OpportunityRow.kind).where(
            OpportunityRow.opportunity_id.in_(chunk)
        )
        out.update({str(oid): str(kind) for oid, kind in session.execute(stmt)})
    return out


def _feedback_lines(session: Session, rows: Sequence[FeedbackRow], salt: bytes) -> Iterable[str]:
    """One JSON line per feedback row, ordered by time, with pseudonymous client and event ids."""
    kinds = _opportunity_kinds(session, (r.opportunity_id for r in rows))
    for row in sorted(rows, key=lambda r: (str(r.payload.get("occurred_at", "")), r.event_id)):
        event = dict(row.payload)
        event["client_id"] = pseudonym(str(row.client_id), salt)
        event["event_id"] = event_pseudonym(row.event_id, salt)
        line = {"kind": "feedback", "event": event, "opportunity_kind": kinds.get(row.opportunity_id)}
        yield json.dumps(line, sort_keys=True)


def export_training_data(session: Session, out: Path, *, salt: bytes | None = None) -> ExportReport:
    """Write the JSON lines described in the module docstring (a meta line, clients, then feedback).

    Only clients with ``model_training`` consent are exported, with ids replaced by salted hashes (a fresh
    random salt per export unless given); their feedback events carry the same pseudonym, a pseudonymous event
    id and the opportunity's kind. Audit-only attributes and who recorded an event are never exported.
    """
    salt = salt if salt is not None else secrets.token_bytes(32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    n_clients = n_feedback = 0
    ids: list[str] = []
    meta = {
        "kind": "meta",
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(meta, sort_keys=True) + "\n")
        for profile in repo.training_clients(session):
            ids.append(profile.client_id)
            record = profile.model_dump(mode="json")
            record["client_id"] = pseudonym(profile.client_id, salt)
            fh.write(json.dumps({"kind": "client", "profile": record}, sort_keys=True) + "\n")
            n_clients += 1
        for line in _feedback_lines(session, repo.feedback_for_clients(session, ids), salt):
            fh.write(line + "\n")
            n_feedback += 1
    tmp.replace(out)
    return ExportReport(n_clients, n_feedback, out)
