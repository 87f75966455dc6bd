"""The FastAPI application factory and its lifespan (database, migrations, model holder)."""

from __future__ import annotations

import gc
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from features.centres import CENTRES
from service.auth import TokenVerifier
from service.candidates import warm_candidate_pools
from service.coding import CoderHolder
from service.errors import install_error_handlers
from service.impressions import ImpressionLog
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, LoadShedMiddleware, SecurityHeadersMiddleware, TimingMiddleware
from service.model_holder import ModelHolder, Snapshot
from service.oidc import IdentityProviderError
from service.profile_cache import ProfileCache
from service.routers import candidates, clients, coding, feedback, health, model, opportunities, suggestions
from service.settings import Settings, get_settings
from service.storage import repositories as repo
from service.storage.db import make_engine, make_session_factory, migrate

logger = logging.getLogger(__name__)

API_DESCRIPTION = """Suggestions, paths and candidates for Finland's immigrant competence centres.

Every route except `/healthz` and `/readyz` needs `Authorization: Bearer <JWT>`: a token of the configured
identity provider (RS256/ES256, OpenID Connect) or, in development, one minted by `polku token` (HS256). The
token names the caller's role (counsellor, coordinator, data_scientist, admin) and centre.
Decisions stay with people: the service suggests and explains, counsellors and coordinators decide.
"""

# Tags group the operations in generated clients (one module per tag) and in the published document.
OPENAPI_TAGS: list[dict[str, str]] = [
    {"name": "suggestions", "description": "Next steps for a client, with reasons, gaps, remedies and paths."},
    {"name": "candidates", "description": "Consenting clients of a centre ranked for one vacancy or trial slot."},
    {"name": "clients", "description": "Client profiles and consents, erasure and the access log."},
    {"name": "coding", "description": "ESCO occupations, ISCO-08 codes and skills proposed from a text."},
    {"name": "opportunities", "description": "The catalogue of trainings, work trials and vacancies."},
    {"name": "feedback", "description": "Counsellors' decisions and outcomes."},
    {"name": "model", "description": "The model in service and its reload."},
    {"name": "health", "description": "Liveness, readiness and metrics."},
]


def _fetch_signing_keys(app: FastAPI) -> None:
    """Fetch the identity provider's keys before serving; on failure, start anyway (readiness reports it)."""
    verifier: TokenVerifier = app.state.token_verifier
    if verifier.keys is None:
        return
    try:
        verifier.keys.refresh()
    except IdentityProviderError as exc:
        logger.warning(
            "identity provider keys not loaded at start (tokens of the provider fail until they are): %s", exc
        )


def _start(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    _fetch_signing_keys(app)
    engine = make_engine(settings.database_url)
    migrate(engine)
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.impressions.writer.start(app.state.session_factory)
    holder: ModelHolder = app.state.model_holder
    with app.state.session_factory() as session:
        fingerprint = repo.catalogue_fingerprint(session)
        opportunities = repo.all_opportunities(session)
        if not holder.ready:
            holder.start(opportunities, fingerprint)
        snap = holder.current()
        lm = snap.loaded
        repo.record_model_event(
            session,
            "loaded",
            name=lm.name,
            version=lm.version,
            alias=lm.alias,
            fallback=lm.fallback,
            detail=f"source={lm.source}" + (f"; {holder.last_error[:300]}" if holder.last_error else ""),
        )
        session.commit()
    _warm_candidate_pools(app, snap)
    app.state.coder_holder.build()  # once per process (3-5 s), before the service reports ready
    # Catalogue, profiles and encodings are millions of long-lived objects: moved out of the collector's
    # generations, a full collection no longer walks them (it otherwise adds 100+ ms to a random request).
    gc.collect()
    gc.freeze()
    app.state.metrics.set_model(lm.name, lm.alias, lm.version, lm.source, lm.fallback, lm.model.trees)
    logger.info(
        "service ready: model %s v%s (%s), %d catalogue items",
        lm.name,
        lm.version,
        lm.source,
        len(snap.catalogue.opportunities),
    )


def _warm_candidate_pools(app: FastAPI, snap: Snapshot) -> None:
    """Load and encode every centre's shareable clients once, so the first candidates request is not cold."""
    cache: ProfileCache = app.state.profile_cache
    start = time.perf_counter()
    with app.state.session_factory() as session:
        pools = {centre: cache.resolve(session, repo.shareable_client_versions(session, centre)) for centre in CENTRES}
    n = warm_candidate_pools(snap, pools)
    logger.info("candidate pools ready: %d clients in %.1fs", n, time.perf_counter() - start)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await run_in_threadpool(_start, app)
    try:
        yield
    finally:
        # Uvicorn runs this on SIGTERM after in-flight requests end: queued impressions are written first.
        await run_in_threadpool(app.state.impressions.writer.close)
        app.state.engine.dispose()


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the API, as published in ``docs/openapi.json`` (``polku openapi``).

    The app is built with throwaway settings and never started: the document depends on no configuration.
    """
    settings = Settings(jwt_secret=SecretStr(secrets.token_urlsafe(48)), registry_enabled=False)
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def openapi_json(document: dict[str, Any]) -> str:
    """The published text form of an OpenAPI document (indented, key order kept, final newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def create_app(settings: Settings | None = None, *, model_holder: ModelHolder | None = None) -> FastAPI:
    """Build the Polku API.

    Args:
        settings: configuration (default: from ``POLKU_*`` environment variables).
        model_holder: a prepared holder (tests); by default one is created and loads the champion at start.

    Returns:
        The app; its lifespan migrates the database and loads the model.
    """
    settings = settings or get_settings()
    settings.require_authentication()  # fail fast: outside dev, an identity provider or a secret is required
    app = FastAPI(
        title="Polku API",
        version="1.0.0",
        description=API_DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    app.state.metrics = ServiceMetrics()
    app.state.model_holder = model_holder or ModelHolder(settings)
    app.state.profile_cache = ProfileCache()
    app.state.coder_holder = CoderHolder()
    app.state.impressions = ImpressionLog(settings)
    install_error_handlers(app)
    for module in (health, suggestions, candidates, clients, opportunities, coding, feedback, model):
        # Added flat (routers carry their own prefixes) so that ``app.routes`` lists every APIRoute: the
        # security tests enumerate them, and FastAPI >= 0.16x wraps include_router() results.
        for route in module.router.routes:
            app.router.routes.append(route)
    # Innermost: admission sees whole bodies (a slow upload is not "in flight" and cannot crowd others out).
    app.add_middleware(
        LoadShedMiddleware,
        limit=settings.max_in_flight,
        reserve=settings.feedback_reserve,
        max_age_s=settings.overload_age_ms / 1000.0,
        retry_after_s=settings.overload_retry_after_s,
        metrics=app.state.metrics,
        route_of=_route_of(app),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(TimingMiddleware, metrics=app.state.metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def _route_of(app: FastAPI) -> Callable[[MutableMapping[str, Any]], Any]:
    """The route a request will reach, found before routing (``None`` when none fits)."""

    def route_of(scope: MutableMapping[str, Any]) -> Any:
        for route in app.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None

    return route_of
