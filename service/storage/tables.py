"""ORM tables of the service store (SQLAlchemy 2, portable between SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations are deterministic."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON}


class ClientRow(Base):
    """A stored client profile; consents are columns so that consent filters run in SQL."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    centre: Mapped[str] = mapped_column(String(32), index=True)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    consent_matching: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_share_with_coordinators: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_model_training: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_clients_centre_share", "centre", "consent_share_with_coordinators"),)


class AuditAttributeRow(Base):
    """Audit-only attributes, kept apart from profiles and never read on a ranking path."""

    __tablename__ = "audit_attributes"

    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    gender: Mapped[str] = mapped_column(String(16), default="unknown")
    mother_tongue: Mapped[str | None] = mapped_column(String(2), nullable=True)
    country_of_origin: Mapped[str | None] = mapped_column(String(3), nullable=True)


class OpportunityRow(Base):
    """A catalogue item (training, work trial, vacancy)."""

    __tablename__ = "opportunities"

    opportunity_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    centre: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class FeedbackRow(Base):
    """A decision or outcome event; ``event_id`` makes writes idempotent.

    Erasure unlinks the client (``client_id`` and the payload's copy removed). Retention de-identifies rows
    older than ``POLKU_RETENTION_FEEDBACK_DAYS``: also the event id (case tools may build it from a client id)
    and who recorded it are replaced or removed, and ``deidentified_at`` is set.
    """

    __tablename__ = "feedback_events"

    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    opportunity_id: Mapped[str] = mapped_column(String(64), index=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    recorded_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    deidentified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditLogRow(Base):
    """One read of personal data: who, in which role and centre, which client, for what purpose, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    centre: Mapped[str | None] = mapped_column(String(32), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    purpose: Mapped[str] = mapped_column(String(64))


class ModelEventRow(Base):
    """Model lifecycle events of this service (loaded, reloaded, reload refused, fallback)."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[str | None] = mapped_column(String(500), nullable=True)


class StoreVersionRow(Base):
    """A change counter per part of the store (``catalogue``, ``clients:<centre>``), bumped by every write.

    Requests compare one primary-key row with the version they cached instead of scanning a table.
    """

    __tablename__ = "store_versions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PriceRunRow(Base):
    """One ``polku allocate`` run for a centre: which model, which day, which solver, how long, how good.

    Holds no client identifiers: only counts and totals (the per-client allocation is not stored).
    """

    __tablename__ = "price_runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    centre: Mapped[str] = mapped_column(String(32), index=True)
    reference_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    solver: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float)
    population: Mapped[int] = mapped_column(Integer)  # clients allocated (a count; "client" names people)
    n_items: Mapped[int] = mapped_column(Integer)
    n_pairs: Mapped[int] = mapped_column(Integer)
    total_value: Mapped[float] = mapped_column(Float)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ItemPriceRow(Base):
    """The congestion price of one item in one run (0 for items with seats to spare), with its seats and load."""

    __tablename__ = "item_prices"

    run_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("price_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    opportunity_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    price: Mapped[float] = mapped_column(Float)
    capacity: Mapped[int] = mapped_column(Integer)
    allocated: Mapped[int] = mapped_column(Integer)


class ImpressionRow(Base):
    """One item of a served ranking (a slate): who was shown what, where, by which model and policy, how likely.

    A suggestions slate names the client and each shown opportunity; a candidates slate names the opportunity
    and each shown client. ``propensity`` is the probability, under the serving policy, that this item was
    chosen at this ``position`` given the items placed before it (``models.exploration``); 1.0 for the
    deterministic policy. ``reference_date`` is the day the ranking was computed for (features and eligibility
    depend on it), so a logged slate can be replayed exactly under another model. Erasure deletes a client's
    rows; retention deletes rows older than ``POLKU_RETENTION_IMPRESSIONS_DAYS``.
    """

    __tablename__ = "impressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    impression_id: Mapped[str] = mapped_column(String(36), index=True)
    surface: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    opportunity_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy: Mapped[str] = mapped_column(String(64))
    propensity: Mapped[float] = mapped_column(Float)
    explored: Mapped[bool] = mapped_column(Boolean, default=False)
    reference_date: Mapped[date] = mapped_column(Date)
    shown_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
