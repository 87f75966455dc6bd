"""GET /healthz, /readyz (no token) and /metrics, /openapi.json (token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.auth import TokenVerifier
from service.deps import AnyUser, EngineDep, HolderDep, MetricsDep, Observer, VerifierDep
from service.schemas import ERROR_RESPONSES, HealthResponse, IdentityProviderInfo, ReadyResponse
from service.storage.db import ping
from service.suggest import model_info

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="checkLiveness", response_model=HealthResponse)
def healthz() -> HealthResponse:
    """The process is alive."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz", operation_id="checkReadiness", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}}
)
def readyz(holder: HolderDep, engine: EngineDep, verifier: VerifierDep) -> Any:
    """Ready when a model is loaded, the database answers and (with OIDC) signing keys are at hand.

    ``degraded`` (still 200) when not serving the champion, or when the identity provider's key set cannot be
    fetched but cached keys keep verifying tokens.
    """
    db_ok = ping(engine)
    idp = _identity_provider(verifier)
    if not holder.ready:
        body = ReadyResponse(status="unavailable", database=db_ok, identity_provider=idp, reason="model not loaded")
        return JSONResponse(body.model_dump(mode="json"), status_code=503, headers={"Retry-After": "5"})
    snap = holder.current()
    problems: list[str] = []
    if not db_ok:
        problems.append("database unreachable")
    if idp is not None and idp.keys == 0 and verifier.hs256_key is None:
        problems.append(f"identity provider keys {idp.status.replace('_', ' ')}: no token can be verified")
    if problems:
        body = ReadyResponse(
            status="unavailable",
            database=db_ok,
            model=model_info(snap),
            identity_provider=idp,
            reason="; ".join(problems),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=503, headers={"Retry-After": "5"})
    notes: list[str] = []
    if snap.loaded.degraded:
        notes.append(f"serving from {snap.loaded.source}")
    trees = snap.loaded.model.trees
    if trees is not None and trees.fallback:
        notes.append(f"compiled trees not used ({trees.detail}): LightGBM's booster scores")
    if idp is not None and idp.status != "ok":
        notes.append(f"identity provider keys {idp.status.replace('_', ' ')}: {idp.keys} cached keys in use")
    return ReadyResponse(
        status="degraded" if notes else "ok",
        database=True,
        model=model_info(snap),
        identity_provider=idp,
        reason="; ".join(notes) or None,
    )


def _identity_provider(verifier: TokenVerifier) -> IdentityProviderInfo | None:
    if verifier.keys is None:
        return None
    state = verifier.keys.status()
    return IdentityProviderInfo(status=state.status, keys=state.keys, fetched_at=state.fetched_at)


@router.get(
    "/metrics",
    operation_id="getMetrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **ERROR_RESPONSES},
)
def metrics(_principal: Observer, service_metrics: MetricsDep) -> Response:
    """Prometheus exposition: latency per route, model version, suggestions served, fallback answers."""
    return Response(service_metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/openapi.json", include_in_schema=False)
def openapi(_principal: AnyUser, request: Request) -> JSONResponse:
    """The OpenAPI description (behind a token like every other route)."""
    return JSONResponse(request.app.openapi())
