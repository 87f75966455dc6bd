"""Reading a saved synthetic world (files only, no import of ``training``) and loading it into the store."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from features.records import AuditAttributes, ClientProfile, Opportunity
from service.storage import repositories as repo

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_JSON_COLUMNS = (
    "profile",
    "opportunity",
    "record",
    "profile_json",
    "client_json",
    "opportunity_json",
    "audit_json",
    "json",
)
_SUFFIXES = (".parquet", ".jsonl", ".json")


class WorldFormatError(ValueError):
    """The world directory does not hold the expected files."""


@dataclass(frozen=True)
class LoadReport:
    """How many records a load inserted or updated."""

    clients: int
    new_clients: int
    audit: int
    opportunities: int
    new_opportunities: int


def _find(directory: Path, stem: str) -> Path | None:
    for suffix in _SUFFIXES:
        path = directory / f"{stem}{suffix}"
        if path.exists():
            return path
    return None


def _rows(path: Path) -> Iterator[dict[str, Any] | str]:
    """Rows as dicts, or JSON strings when the file keeps each record in one JSON column."""
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        col = next((c for c in _JSON_COLUMNS if c in frame.columns), None)
        if col is not None:
            yield from (str(v) for v in frame[col])
        else:
            for rec in frame.to_dict(orient="records"):
                yield {str(k): (None if _is_nan(v) else v) for k, v in rec.items()}
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            yield from (line for line in fh if line.strip())
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise WorldFormatError(f"{path.name}: expected a JSON list")
        yield from data


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


def _validate(model: type[M], row: dict[str, Any] | str) -> M:
    if isinstance(row, str):
        return model.model_validate_json(row)
    col = next((c for c in _JSON_COLUMNS if c in row), None)
    if col is not None and isinstance(row[col], str):
        return model.model_validate_json(row[col])
    return model.model_validate_json(json.dumps(row, default=str))


def read_world(directory: Path) -> tuple[list[ClientProfile], list[AuditAttributes], list[Opportunity]]:
    """Read clients, audit attributes and opportunities from a saved world directory.

    Looks for ``clients``, ``audit`` and ``opportunities`` as ``.parquet`` (records as JSON strings in a
    ``profile``/``json`` column, or plain columns), ``.jsonl`` or ``.json`` files.

    Raises:
        WorldFormatError: clients or opportunities are missing.
    """
    found = {stem: _find(directory, stem) for stem in ("clients", "audit", "opportunities")}
    if found["clients"] is None or found["opportunities"] is None:
        raise WorldFormatError(f"{directory}: needs clients.* and opportunities.* (parquet, jsonl or json)")
    clients = [_validate(ClientProfile, r) for r in _rows(found["clients"])]
    audit_path = found["audit"]
    audit = [_validate(AuditAttributes, r) for r in _rows(audit_path)] if audit_path is not None else []
    opportunities = [_validate(Opportunity, r) for r in _rows(found["opportunities"])]
    return clients, audit, opportunities


def load_world(session: Session, directory: Path) -> LoadReport:
    """Load a world into the store in bulk (idempotent: a second load updates in place)."""
    clients, audit, opportunities = read_world(directory)
    known = {c.client_id for c in clients}
    audit = [a for a in audit if a.client_id in known]
    new_opps = repo.upsert_opportunities(session, opportunities)
    new_clients = repo.upsert_clients(session, clients, audit)
    session.commit()
    logger.info("world loaded: %d clients, %d opportunities", len(clients), len(opportunities))
    return LoadReport(len(clients), new_clients, len(audit), len(opportunities), new_opps)
