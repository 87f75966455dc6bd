"""Impressions: every served slate gets an id, and its rows are stored by a background writer off the request path.

A ranking request only builds its rows and puts them on a queue (microseconds); one writer thread inserts the
queued rows in one transaction every ``POLKU_IMPRESSION_FLUSH_MS``. The lifespan closes the writer at shutdown
(uvicorn runs it on SIGTERM), which writes whatever is still queued, so no shown slate is lost. Feedback naming
an impression that is still queued flushes the queue before looking it up.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models.exploration import SlatePolicy, policy_from_setting
from service.errors import FieldError
from service.settings import Settings
from service.storage import impressions as store
from service.storage.tables import utcnow

logger = logging.getLogger(__name__)

Row = dict[str, Any]


class ImpressionWriter:
    """Batches impression rows on a queue and inserts them from one thread; :meth:`close` writes the rest."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._lock = threading.Condition()
        self._pending: list[Row] = []
        self._submitted = 0  # rows ever queued
        self._written = 0  # rows ever stored
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._factory: sessionmaker[Session] | None = None

    def start(self, factory: sessionmaker[Session]) -> None:
        """Start the writer thread on a session factory."""
        self._factory = factory
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="impression-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[Row]) -> None:
        """Queue rows for writing (never blocks on the database)."""
        if not rows:
            return
        with self._lock:
            self._pending.extend(rows)
            self._submitted += len(rows)

    def forget(self, client_id: str) -> int:
        """Drop queued rows naming ``client_id`` (after an erasure); returns how many were dropped."""
        with self._lock:
            keep = [r for r in self._pending if r.get("client_id") != client_id]
            dropped = len(self._pending) - len(keep)
            self._pending = keep
            self._written += dropped  # settled: a flush waiting for them must not wait in vain
            self._lock.notify_all()
            return dropped

    @property
    def backlog(self) -> int:
        """Rows queued and not yet stored."""
        with self._lock:
            return self._submitted - self._written

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every row queued before the call is stored; False on timeout (or without a thread)."""
        with self._lock:
            target = self._submitted
            if self._written >= target:
                return True
        if self._thread is None or not self._thread.is_alive():
            return self._write_pending() and self._written >= target
        self._wake.set()
        with self._lock:
            return self._lock.wait_for(lambda: self._written >= target, timeout=timeout_s)

    def close(self) -> None:
        """Stop the thread and write what is still queued (called by the lifespan at shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if not self._write_pending():
            logger.error("impression writer: %d impression rows could not be stored at shutdown", self.backlog)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self._write_pending()

    def _write_pending(self) -> bool:
        """Insert every queued row in one transaction; on failure the rows stay queued for the next round."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return True
        if self._factory is None:
            with self._lock:
                self._pending[:0] = rows
            return False
        try:
            with self._factory() as session:
                store.insert_impressions(session, rows)
                session.commit()
        except Exception as exc:  # noqa: BLE001 - the database may be down; keep the rows, retry later
            logger.warning("impression writer: %d rows not stored yet (%s)", len(rows), type(exc).__name__)
            with self._lock:
                self._pending[:0] = rows
            return False
        with self._lock:
            self._written += len(rows)
            self._lock.notify_all()
        return True


class ImpressionLog:
    """The serving policy and the impression writer of one app."""

    def __init__(self, settings: Settings) -> None:
        self.policy: SlatePolicy = policy_from_setting(settings.exploration)
        self.writer = ImpressionWriter(settings.impression_flush_ms / 1000.0)

    @staticmethod
    def new_id() -> str:
        """A fresh impression id (32 hex digits)."""
        return uuid.uuid4().hex

    @staticmethod
    def seed(impression_id: str, group: int = 0) -> int:
        """The seed of a slate's draw: derived from its impression id, so a logged slate can be replayed."""
        return (int(impression_id[:16], 16) + group) % (2**63)

    def record(self, rows: Sequence[Row]) -> None:
        """Queue the rows of one served slate."""
        self.writer.submit(rows)

    def check_feedback(self, session: Session, impression_id: str, client_id: str, opportunity_id: str) -> None:
        """Make sure feedback names an impression that showed its client and opportunity.

        Raises:
            FieldError: 422 on ``body.impression_id`` when no stored impression showed this pair.
        """
        shows = store.impression_shows(session, impression_id, client_id, opportunity_id)
        if shows is None and self.writer.backlog:
            self.writer.flush()
            shows = store.impression_shows(session, impression_id, client_id, opportunity_id)
        if shows is None:
            raise FieldError("body.impression_id", "unknown impression_id: no served slate has this id")
        if not shows:
            raise FieldError("body.impression_id", "the impression did not show this client_id and opportunity_id")


def impression_row(
    impression_id: str,
    *,
    surface: str,
    client_id: str,
    opportunity_id: str,
    kind: str,
    position: int,
    score: float,
    model: Mapping[str, Any],
    policy: str,
    propensity: float,
    explored: bool,
    reference_date: date,
    shown_at: datetime | None = None,
) -> Row:
    """One impression row (columns of ``impressions``)."""
    return {
        "impression_id": impression_id,
        "surface": surface,
        "client_id": client_id,
        "opportunity_id": opportunity_id,
        "kind": kind,
        "position": position,
        "score": float(score),
        "model_name": str(model["name"]),
        "model_version": model.get("version"),
        "policy": policy,
        "propensity": float(propensity),
        "explored": bool(explored),
        "reference_date": reference_date,
        "shown_at": shown_at or utcnow(),
    }
