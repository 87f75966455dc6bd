"""De-identified export of training data: consenting clients only, salted-hash ids, no audit attributes."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from service.storage import repositories as repo


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    clients: int
    feedback: int
    path: Path


def pseudonym(client_id: str, salt: bytes) -> str:
    """A salted hash standing in for a client id (valid as a ``ClientId``; not linkable without the salt)."""
    return "anon-" + hashlib.sha256(salt + client_id.encode()).hexdigest()[:24]


def export_training_data(session: Session, out: Path, *, salt: bytes | None = None) -> ExportReport:
    """Write JSON lines: ``{"kind": "client", "profile": ...}`` and ``{"kind": "feedback", "event": ...}``.

    Only clients with ``model_training`` consent are exported, with ids replaced by salted hashes (a fresh
    random salt per export unless given); their feedback events carry the same pseudonym. Audit-only
    attributes are never exported.
    """
    salt = salt if salt is not None else secrets.token_bytes(32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    n_clients = n_feedback = 0
    ids: list[str] = []
    with tmp.open("w", encoding="utf-8") as fh:
        for profile in repo.training_clients(session):
            ids.append(profile.client_id)
            record = profile.model_dump(mode="json")
            record["client_id"] = pseudonym(profile.client_id, salt)
            fh.write(json.dumps({"kind": "client", "profile": record}, sort_keys=True) + "\n")
            n_clients += 1
        for row in repo.feedback_for_clients(session, ids):
            event = dict(row.payload)
            event["client_id"] = pseudonym(str(row.client_id), salt)
            fh.write(json.dumps({"kind": "feedback", "event": event}, sort_keys=True) + "\n")
            n_feedback += 1
    tmp.replace(out)
    return ExportReport(n_clients, n_feedback, out)
