"""GET /healthz, /readyz (no token) and /metrics, /openapi.json (token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.deps import AnyUser, HolderDep, MetricsDep, Observer
from service.schemas import ERROR_RESPONSES, HealthResponse, ReadyResponse
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
def readyz(request: Request, holder: HolderDep) -> Any:
    """Ready when a model is loaded and the database answers; ``degraded`` when not serving the champion."""
    db_ok = ping(request.app.state.engine)
    if not holder.ready:
        body = ReadyResponse(status="unavailable", database=db_ok, reason="model not loaded")
        return JSONResponse(body.model_dump(mode="json"), status_code=503, headers={"Retry-After": "5"})
    snap = holder.current()
    if not db_ok:
        body = ReadyResponse(
            status="unavailable", database=False, model=model_info(snap), reason="database unreachable"
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=503, headers={"Retry-After": "5"})
    degraded = snap.loaded.degraded
    reason = f"serving from {snap.loaded.source}" if degraded else None
    return ReadyResponse(status="degraded" if degraded else "ok", database=True, model=model_info(snap), reason=reason)


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
