"""Counsellors' recorded decisions and outcomes as training data, read from the service's export file.

The service writes ``polku export-training-data --out FILE`` (JSON lines, see ``service/export.py``); this module
is the reading side of that contract (``service`` and ``training`` never import each other). Every line is
validated with the ``features`` records; a bad line is reported with its number and reason, never dropped
silently. :func:`feedback_history` turns the events into rows with the world history's columns
(:data:`training.datasets.LOG_COLUMNS`) so that :func:`training.datasets.build_training_data` can
append them to the training period.

Row semantics per (client, opportunity): ``accepted`` if the latest decision accepted it or any positive outcome
(started, completed, employed) was recorded; ``started`` if started or completed; ``completed`` unless a later
``dropped_out`` followed it; ``employed_6m`` as recorded. ``employed_12m`` and reject reasons are kept in
:class:`FeedbackData` but do not enter the history columns (the label scale ends at employed within 6 months).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, TypeAlias

import pandas as pd
from pydantic import ValidationError

from features.events import DecisionEvent, ImpressionRecord, OutcomeEvent
from features.records import KINDS, ClientProfile, Opportunity

logger = logging.getLogger(__name__)

EXPORT_FORMAT: Final = "polku-training-export"
SUPPORTED_VERSIONS: Final = frozenset({1, 2})
SHOWN_BY_PREFIX: Final = "feedback"
_POSITIVE_OUTCOMES: Final = frozenset({"started", "completed", "employed_6m", "employed_12m"})

FeedbackEvent: TypeAlias = DecisionEvent | OutcomeEvent  # noqa: UP040 - a plain alias, usable at runtime


class FeedbackFormatError(ValueError):
    """The file is not a Polku training export, or (with ``strict=True``) holds bad lines.

    Attributes:
        bad_lines: the offending lines (empty when the whole file is rejected).
    """

    def __init__(self, message: str, bad_lines: Sequence[BadLine] = ()) -> None:
        super().__init__(message)
        self.bad_lines = tuple(bad_lines)


@dataclass(frozen=True)
class BadLine:
    """A line of the export that was not used, and why.

    Attributes:
        line: 1-based line number.
        reason: what is wrong (field names and messages; never the submitted values).
    """

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class FeedbackData:
    """A validated export: de-identified consenting clients and their feedback events.

    Attributes:
        clients: client profiles (pseudonymous ids), in file order.
        decisions: decision events, in file order.
        outcomes: outcome events, in file order.
        opportunity_kinds: opportunity id -> kind as the service stored it when exporting.
        impressions: shown items (version 2 exports), in file order.
        bad_lines: lines that were not used, with their reasons.
        meta: the export's meta line (format, version, exported_at), empty for exports without one.
        source: the file read, if any.
    """

    clients: tuple[ClientProfile, ...]
    decisions: tuple[DecisionEvent, ...]
    outcomes: tuple[OutcomeEvent, ...]
    opportunity_kinds: Mapping[str, str] = field(default_factory=dict)
    impressions: tuple[ImpressionRecord, ...] = ()
    bad_lines: tuple[BadLine, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def n_events(self) -> int:
        """Number of valid events (decisions and outcomes)."""
        return len(self.decisions) + len(self.outcomes)


@dataclass(frozen=True)
class FeedbackHistory:
    """Feedback as history rows ready to be appended to the training period.

    Attributes:
        clients: the clients having at least one row.
        history: one row per (client, opportunity) with the log columns of ``training.datasets.LOG_COLUMNS``.
        reference_dates: client id -> date of the client's first used event (features are computed then).
        events_used: events that contributed to a row.
        skipped_unknown_opportunity: events skipped because their opportunity is not in the catalogue.
        unknown_opportunity_ids: the distinct unknown opportunity ids.
        kind_mismatches: events whose exported kind differs from the catalogue's (the catalogue's is used).
    """

    clients: list[ClientProfile]
    history: pd.DataFrame
    reference_dates: dict[str, date]
    events_used: int
    skipped_unknown_opportunity: int
    unknown_opportunity_ids: tuple[str, ...]
    kind_mismatches: int

    def __len__(self) -> int:
        return len(self.history)


def _validation_reason(what: str, error: ValidationError) -> str:
    """Field locations and messages of a validation error, without the offending input values."""
    parts = []
    for err in error.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid {what}: " + "; ".join(parts)


def _check_meta(record: Mapping[str, Any], line: int) -> None:
    if record.get("format") != EXPORT_FORMAT:
        raise FeedbackFormatError(f"line {line}: not a {EXPORT_FORMAT} file (format {record.get('format')!r})")
    if record.get("version") not in SUPPORTED_VERSIONS:
        raise FeedbackFormatError(
            f"line {line}: export version {record.get('version')!r} is not supported ({sorted(SUPPORTED_VERSIONS)})"
        )


def _parse_event(record: Mapping[str, Any]) -> tuple[FeedbackEvent, str | None]:
    """The event of a feedback line and the exported opportunity kind; raises ValueError / ValidationError."""
    event = record.get("event")
    if not isinstance(event, dict):
        raise ValueError("feedback line without an 'event' object")
    kind = record.get("opportunity_kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"opportunity_kind must be one of {list(KINDS)} or null")
    etype = event.get("type")
    if etype == "decision":
        return DecisionEvent.model_validate(event, strict=False), kind
    if etype == "outcome":
        return OutcomeEvent.model_validate(event, strict=False), kind
    raise ValueError("event.type must be 'decision' or 'outcome'")


class _Reader:
    """Accumulates the valid records and the bad lines of one file."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientProfile] = {}
        self.events: list[tuple[int, FeedbackEvent]] = []
        self.event_ids: set[str] = set()
        self.kinds: dict[str, str] = {}
        self.impressions: list[ImpressionRecord] = []
        self.bad: list[BadLine] = []
        self.meta: dict[str, Any] = {}

    def line(self, number: int, text: str) -> None:
        if not text.strip():
            return
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            self.bad.append(BadLine(number, f"not JSON ({exc.msg} at column {exc.colno})"))
            return
        if not isinstance(record, dict):
            self.bad.append(BadLine(number, "not a JSON object"))
            return
        try:
            self._record(number, record)
        except FeedbackFormatError:
            raise  # the whole file is not an export: no line of it can be trusted
        except ValidationError as exc:
            self.bad.append(BadLine(number, _validation_reason(str(record.get("kind")), exc)))
        except ValueError as exc:
            self.bad.append(BadLine(number, str(exc)))

    def _record(self, number: int, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "meta":
            if number != 1 or self.meta:
                raise ValueError("a meta line is only allowed as the first line")
            _check_meta(record, number)
            self.meta = record
        elif kind == "client":
            profile = ClientProfile.model_validate(record.get("profile"), strict=False)
            if not profile.consent.model_training:
                raise ValueError("client has not consented to model_training")
            if profile.client_id in self.clients:
                raise ValueError("duplicate client_id")
            self.clients[profile.client_id] = profile
        elif kind == "feedback":
            event, opp_kind = _parse_event(record)
            if event.event_id in self.event_ids:
                raise ValueError("duplicate event_id")
            self.event_ids.add(event.event_id)
            self.events.append((number, event))
            if opp_kind is not None:
                self.kinds[event.opportunity_id] = opp_kind
        elif kind == "impression":
            self.impressions.append(ImpressionRecord.model_validate(record.get("impression"), strict=False))
        else:
            raise ValueError("'kind' must be 'meta', 'client', 'impression' or 'feedback'")

    def result(self, source: Path | None) -> FeedbackData:
        decisions: list[DecisionEvent] = []
        outcomes: list[OutcomeEvent] = []
        for number, event in self.events:
            if event.client_id not in self.clients:
                self.bad.append(BadLine(number, "event's client_id is not among the file's (consenting) clients"))
            elif isinstance(event, DecisionEvent):
                decisions.append(event)
            else:
                outcomes.append(event)
        return FeedbackData(
            clients=tuple(self.clients.values()),
            decisions=tuple(decisions),
            outcomes=tuple(outcomes),
            opportunity_kinds=dict(self.kinds),
            impressions=tuple(i for i in self.impressions if i.client_id in self.clients),
            bad_lines=tuple(sorted(self.bad, key=lambda b: b.line)),
            meta=dict(self.meta),
            source=source,
        )


def read_feedback_export(path: str | Path, *, strict: bool = False) -> FeedbackData:
    """Read and validate an export written by ``polku export-training-data``.

    Args:
        path: the JSON lines file.
        strict: raise on any bad line instead of reporting it in :attr:`FeedbackData.bad_lines`.

    Returns:
        The valid clients and events, and the bad lines (each logged as a warning).

    Raises:
        FeedbackFormatError: the file is not an export of a supported version, or ``strict`` and bad lines.
        OSError: the file cannot be read.
    """
    source = Path(path)
    reader = _Reader()
    with source.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            reader.line(number, text)
    data = reader.result(source)
    for bad in data.bad_lines:
        logger.warning("%s: %s", source, bad)
    if strict and data.bad_lines:
        raise FeedbackFormatError(
            f"{source}: {len(data.bad_lines)} bad line(s), first {data.bad_lines[0]}", data.bad_lines
        )
    logger.info(
        "feedback export %s: %d clients, %d decisions, %d outcomes, %d bad lines",
        source,
        len(data.clients),
        len(data.decisions),
        len(data.outcomes),
        len(data.bad_lines),
    )
    return data


@dataclass
class _Pair:
    """Events of one (client, opportunity)."""

    decisions: list[DecisionEvent] = field(default_factory=list)
    outcomes: list[OutcomeEvent] = field(default_factory=list)

    def first_at(self) -> datetime:
        events: list[FeedbackEvent] = [*self.decisions, *self.outcomes]
        return min(e.occurred_at for e in events)

    def row(self) -> dict[str, Any]:
        last: dict[str, datetime] = {}
        for o in self.outcomes:
            last[o.outcome] = max(last.get(o.outcome, o.occurred_at), o.occurred_at)
        decisions = sorted(self.decisions, key=lambda d: (d.occurred_at, d.event_id))
        accepted = bool(decisions and decisions[-1].decision == "accepted") or bool(_POSITIVE_OUTCOMES & last.keys())
        completed = "completed" in last and ("dropped_out" not in last or last["completed"] >= last["dropped_out"])
        ranks = [d.rank_shown for d in decisions if d.rank_shown is not None]
        versions = [d.model_version for d in decisions if d.model_version]
        return {
            "position": ranks[-1] - 1 if ranks else -1,
            "accepted": accepted,
            "started": "started" in last or completed,
            "completed": completed,
            "employed_6m": "employed_6m" in last,
            "shown_by": f"{SHOWN_BY_PREFIX}:{versions[-1]}" if versions else SHOWN_BY_PREFIX,
        }


def feedback_history(data: FeedbackData, opportunities: Sequence[Opportunity]) -> FeedbackHistory:
    """History rows (world history columns) from recorded feedback, one per (client, opportunity).

    Args:
        data: from :func:`read_feedback_export`.
        opportunities: the catalogue the rows are featurized against (the world's, or a catalogue file's);
            events on other opportunities are counted and skipped.

    Returns:
        The rows, their clients and per-client reference dates (date of the first event), with skip counts.
        ``cohort`` is the reference date's year, ``slate_id`` ``feedback:<client>``, ``position`` the shown rank
        minus one (-1 when not recorded).
    """
    kind_of = {o.opportunity_id: o.kind for o in opportunities}
    pairs: dict[tuple[str, str], _Pair] = defaultdict(_Pair)
    unknown: Counter[str] = Counter()
    mismatches = 0
    events: list[FeedbackEvent] = [*data.decisions, *data.outcomes]
    for event in events:
        oid = event.opportunity_id
        if oid not in kind_of:
            unknown[oid] += 1
            continue
        exported = data.opportunity_kinds.get(oid)
        mismatches += int(exported is not None and exported != kind_of[oid])
        pair = pairs[(event.client_id, oid)]
        if isinstance(event, DecisionEvent):
            pair.decisions.append(event)
        else:
            pair.outcomes.append(event)
    first: dict[str, datetime] = {}
    for (client_id, _), pair in pairs.items():
        at = pair.first_at()
        first[client_id] = min(first.get(client_id, at), at)
    reference_dates = {cid: at.date() for cid, at in first.items()}
    rows = [
        {
            "client_id": client_id,
            "opportunity_id": oid,
            "kind": kind_of[oid],
            "cohort": reference_dates[client_id].year,
            "slate_id": f"{SHOWN_BY_PREFIX}:{client_id}",
            **pair.row(),
        }
        for (client_id, oid), pair in sorted(pairs.items())
    ]
    from training.datasets import LOG_COLUMNS

    history = pd.DataFrame(rows, columns=list(LOG_COLUMNS)).astype(
        {
            "client_id": str,
            "opportunity_id": str,
            "kind": str,
            "cohort": "int64",
            "slate_id": str,
            "position": "int64",
            "accepted": bool,
            "started": bool,
            "completed": bool,
            "employed_6m": bool,
            "shown_by": str,
        }
    )
    if unknown:
        logger.warning(
            "feedback: %d event(s) on %d opportunity id(s) not in the catalogue were skipped",
            sum(unknown.values()),
            len(unknown),
        )
    return FeedbackHistory(
        clients=[c for c in data.clients if c.client_id in reference_dates],
        history=history,
        reference_dates=reference_dates,
        events_used=sum(len(p.decisions) + len(p.outcomes) for p in pairs.values()),
        skipped_unknown_opportunity=sum(unknown.values()),
        unknown_opportunity_ids=tuple(sorted(unknown)),
        kind_mismatches=mismatches,
    )


__all__ = [
    "BadLine",
    "FeedbackData",
    "FeedbackFormatError",
    "FeedbackHistory",
    "feedback_history",
    "read_feedback_export",
]
