"""FastAPI dependencies: settings, database session, model snapshot, callers by role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from features.coding import Coder
from service.auth import Principal, TokenVerifier, current_principal, require_roles
from service.coding import CoderHolder
from service.errors import ServiceUnavailable
from service.impressions import ImpressionLog
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder, Snapshot
from service.profile_cache import ProfileCache
from service.settings import Settings
from service.storage import repositories as repo
from service.storage.repositories import Actor


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A database session for one request (routes commit explicitly before answering).

    An ``async`` generator on purpose: FastAPI runs the exit of a sync generator dependency in the
    threadpool, so when every threadpool thread waits for a pooled connection, the sessions that hold the
    connections cannot be closed and the service deadlocks until the pool timeout (503s under load). Closing
    in the event loop only returns the connection (the session does no I/O-heavy work here).
    """
    factory: sessionmaker[Session] = request.app.state.session_factory
    session = factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def get_holder(request: Request) -> ModelHolder:
    """The app's model holder."""
    holder: ModelHolder = request.app.state.model_holder
    return holder


def get_metrics(request: Request) -> ServiceMetrics:
    """The app's metrics."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


def get_profile_cache(request: Request) -> ProfileCache:
    """The app's cache of parsed client profiles (shared by the candidate pools)."""
    cache: ProfileCache = request.app.state.profile_cache
    return cache


def get_impressions(request: Request) -> ImpressionLog:
    """The app's serving policy and impression writer."""
    log: ImpressionLog = request.app.state.impressions
    return log


def get_engine(request: Request) -> Engine:
    """The app's database engine (readiness pings it)."""
    engine: Engine = request.app.state.engine
    return engine


def get_token_verifier(request: Request) -> TokenVerifier:
    """The app's token verifier (readiness reports its key state)."""
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


def get_coder(request: Request) -> Coder:
    """The occupation coder (waits for its start-up build; 503 if it cannot be built)."""
    holder: CoderHolder = request.app.state.coder_holder
    return holder.get()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
CoderDep = Annotated[Coder, Depends(get_coder)]
ProfileCacheDep = Annotated[ProfileCache, Depends(get_profile_cache)]
EngineDep = Annotated[Engine, Depends(get_engine)]
VerifierDep = Annotated[TokenVerifier, Depends(get_token_verifier)]
ImpressionsDep = Annotated[ImpressionLog, Depends(get_impressions)]


def get_snapshot(session: SessionDep, holder: HolderDep) -> Snapshot:
    """The model snapshot for this request, with the catalogue refreshed if the store changed."""
    if not holder.ready:
        raise ServiceUnavailable("model not loaded yet", retry_after_s=5)
    fingerprint = repo.catalogue_fingerprint(session)
    snapshot = holder.refresh_catalogue(fingerprint, lambda: repo.all_opportunities(session))
    # End the read transaction so the pooled connection is not held while this request waits for another
    # threadpool thread (the route body): under load, threads waiting for connections held by requests
    # waiting for threads deadlock until the pool timeout.
    session.rollback()
    return snapshot


SnapshotDep = Annotated[Snapshot, Depends(get_snapshot)]
AnyUser = Annotated[Principal, Depends(current_principal)]
Counsellor = Annotated[Principal, require_roles("counsellor", "admin")]
Coordinator = Annotated[Principal, require_roles("coordinator", "admin")]
StaffForFeedback = Annotated[Principal, require_roles("counsellor", "coordinator", "admin")]
StaffForCoding = Annotated[Principal, require_roles("counsellor", "coordinator", "admin")]
Admin = Annotated[Principal, require_roles("admin")]
Observer = Annotated[Principal, require_roles("data_scientist", "admin")]


def actor_of(principal: Principal) -> Actor:
    """The audit actor of a verified caller."""
    return Actor(subject=principal.subject, role=principal.role, centre=principal.centre)
