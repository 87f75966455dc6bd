"""Feedback contract written by the service and read by training: counsellor decisions and outcomes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from features.records import ClientId, IsoDate, OpportunityId, iso_text_only

EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{7,79}$")]
ImpressionId = Annotated[
    str,
    Field(
        pattern=r"^(?:[0-9a-f]{32}|imp-[0-9a-f]{24})$",
        description="The ``impression_id`` of the ranking response that showed the item (32 hex digits).",
    ),
]
IsoDateTime = Annotated[datetime, Strict(False), BeforeValidator(iso_text_only)]

RejectReason = Literal[
    "not_interested",
    "language_too_demanding",
    "timing",
    "travel",
    "health_or_capacity",
    "already_planned",
    "prerequisite_missing",
    "other",
]
OutcomeKind = Literal["started", "completed", "dropped_out", "employed_6m", "employed_12m"]


class DecisionEvent(BaseModel):
    """A counsellor's decision on one suggestion (the human decides, and the decision becomes training data)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: EventId
    type: Literal["decision"] = "decision"
    client_id: ClientId
    opportunity_id: OpportunityId
    decision: Literal["accepted", "rejected"]
    reason_code: RejectReason | None = None
    rank_shown: int | None = Field(default=None, ge=1, le=1000)
    model_version: str | None = Field(default=None, max_length=64)
    impression_id: ImpressionId | None = None
    occurred_at: IsoDateTime


class OutcomeEvent(BaseModel):
    """What happened after a step was taken, at several horizons (domain.md §9.16)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: EventId
    type: Literal["outcome"] = "outcome"
    client_id: ClientId
    opportunity_id: OpportunityId
    outcome: OutcomeKind
    impression_id: ImpressionId | None = None
    occurred_at: IsoDateTime


class ImpressionRecord(BaseModel):
    """One shown item of a served slate, as exported for training (``service.export``, ``training.feedback``).

    ``propensity`` is the probability that the serving policy placed this item at ``position`` given the items
    placed before it (``models.exploration``); the slate's probability is the product over its items.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    impression_id: ImpressionId
    surface: Literal["suggestions", "candidates"]
    client_id: ClientId
    opportunity_id: OpportunityId
    kind: str = Field(max_length=16)
    position: int = Field(ge=1, le=1000)
    score: float
    propensity: float = Field(gt=0.0, le=1.0)
    policy: str = Field(max_length=64)
    explored: bool
    model_version: str | None = Field(default=None, max_length=64)
    reference_date: IsoDate
    shown_at: IsoDateTime
