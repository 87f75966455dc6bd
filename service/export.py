"""De-identified export of training data: consenting clients only, salted-hash ids, no audit attributes.

The file is the contract between the service and training (``training.feedback`` reads it). JSON lines:

* ``{"kind": "meta", "format": "polku-training-export", "version": 1, "exported_at": ...}`` first;
* ``{"kind": "client", "profile": <ClientProfile JSON, client_id replaced by a pseudonym>}``;
* ``{"kind": "impression", "impression": <ImpressionRecord JSON>}``: every item shown to an exported client (by
  suggestions, or as a candidate), with position, score, serving policy and propensity; ids are pseudonyms;
* ``{"kind": "feedback", "event": <DecisionEvent | OutcomeEvent JSON, client_id and event_id replaced>,
  "opportunity_kind": "training" | "work_trial" | "vacancy" | null, "impression": {...} | null}`` in order of
  ``occurred_at``; an event naming an ``impression_id`` is joined to the shown item (``position``,
  ``propensity``, ``policy``, ``explored``, ``model_version``), its impression id replaced by the same pseudonym.
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

from service.storage import impressions as impression_store
from service.storage import repositories as repo
from service.storage.tables import FeedbackRow, ImpressionRow, OpportunityRow

EXPORT_FORMAT: Final = "polku-training-export"
EXPORT_VERSION: Final = 2
_CHUNK: Final = 500


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    clients: int
    feedback: int
    path: Path
    impressions: int = 0


def pseudonym(client_id: str, salt: bytes) -> str:
    """A salted hash standing in for a client id (valid as a ``ClientId``; not linkable without the salt)."""
    return "anon-" + hashlib.sha256(salt + client_id.encode()).hexdigest()[:24]


def event_pseudonym(event_id: str, salt: bytes) -> str:
    """A salted hash standing in for an event id (case tools may build event ids from client ids)."""
    return "evt-" + hashlib.sha256(salt + b"event:" + event_id.encode()).hexdigest()[:24]


def impression_pseudonym(impression_id: str, salt: bytes) -> str:
    """A salted hash standing in for an impression id (same in impression and feedback lines of one export)."""
    return "imp-" + hashlib.sha256(salt + b"impression:" + impression_id.encode()).hexdigest()[:24]


def _impression_record(row: ImpressionRow, salt: bytes) -> dict[str, object]:
    return {
        "impression_id": impression_pseudonym(row.impression_id, salt),
        "surface": row.surface,
        "client_id": pseudonym(str(row.client_id), salt),
        "opportunity_id": row.opportunity_id,
        "kind": row.kind,
        "position": row.position,
        "score": row.score,
        "propensity": row.propensity,
        "policy": row.policy,
        "explored": row.explored,
        "model_version": row.model_version,
        "reference_date": row.reference_date.isoformat(),
        "shown_at": repo.as_utc(row.shown_at).isoformat(),
    }


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


def _feedback_lines(
    session: Session, rows: Sequence[FeedbackRow], shown: Sequence[ImpressionRow], salt: bytes
) -> Iterable[str]:
    """One JSON line per feedback row, ordered by time, with pseudonymous ids, joined to the shown item."""
    kinds = _opportunity_kinds(session, (r.opportunity_id for r in rows))
    by_pair = {(r.impression_id, r.client_id, r.opportunity_id): r for r in shown}
    for row in sorted(rows, key=lambda r: (str(r.payload.get("occurred_at", "")), r.event_id)):
        event = dict(row.payload)
        event["client_id"] = pseudonym(str(row.client_id), salt)
        event["event_id"] = event_pseudonym(row.event_id, salt)
        joined = None
        if event.get("impression_id"):
            hit = by_pair.get((str(event["impression_id"]), row.client_id, row.opportunity_id))
            event["impression_id"] = impression_pseudonym(str(event["impression_id"]), salt)
            if hit is not None:
                joined = {
                    "position": hit.position,
                    "propensity": hit.propensity,
                    "policy": hit.policy,
                    "explored": hit.explored,
                    "model_version": hit.model_version,
                }
        line = {
            "kind": "feedback",
            "event": event,
            "opportunity_kind": kinds.get(row.opportunity_id),
            "impression": joined,
        }
        yield json.dumps(line, sort_keys=True)


def export_training_data(session: Session, out: Path, *, salt: bytes | None = None) -> ExportReport:
    """Write the JSON lines described in the module docstring (a meta line, clients, then feedback).

    Only clients with ``model_training`` consent are exported, with ids replaced by salted hashes (a fresh
    random salt per export unless given); their impressions and feedback events carry the same pseudonym, a
    pseudonymous event id and the opportunity's kind, and events are joined to the impression that showed them.
    Audit-only attributes and who recorded an event are never exported.
    """
    salt = salt if salt is not None else secrets.token_bytes(32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    n_clients = n_feedback = n_impressions = 0
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
        shown = impression_store.impressions_for_clients(session, ids)
        for row in shown:
            fh.write(json.dumps({"kind": "impression", "impression": _impression_record(row, salt)}, sort_keys=True))
            fh.write("\n")
            n_impressions += 1
        for line in _feedback_lines(session, repo.feedback_for_clients(session, ids), shown, salt):
            fh.write(line + "\n")
            n_feedback += 1
    tmp.replace(out)
    return ExportReport(n_clients, n_feedback, out, n_impressions)
