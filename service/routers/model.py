"""GET /v1/model and POST /v1/admin/model:reload."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from service.deps import Admin, AnyUser, HolderDep, MetricsDep, SessionDep, SettingsDep
from service.model_holder import ReloadRefused, Snapshot
from service.schemas import ERROR_RESPONSES, ModelInfo, ModelResponse
from service.storage import repositories as repo
from service.suggest import model_info

router = APIRouter(prefix="/v1", tags=["model"])

_META_KEYS = ("ranker", "taxonomy_version", "trained_at", "saved_at", "run_id", "model_uri", "registry_version")


def model_response(snapshot: Snapshot) -> ModelResponse:
    """Describe the snapshot in service."""
    lm = snapshot.loaded
    meta = {k: lm.model.metadata.get(k) for k in _META_KEYS if k in lm.model.metadata}
    safe = {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in meta.items()}
    return ModelResponse(
        model=model_info(snapshot),
        source=lm.source,
        degraded=lm.degraded,
        loaded_at=lm.loaded_at,
        feature_count=len(lm.model.feature_names),
        catalogue_size=len(snapshot.catalogue.opportunities),
        metadata=safe,
    )


@router.get("/model", operation_id="getModel", response_model=ModelResponse, responses=ERROR_RESPONSES)
def get_model(_principal: AnyUser, holder: HolderDep) -> ModelResponse:
    """The model in service: name, version, alias, fallback flag, source and metadata."""
    if not holder.ready:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="model not loaded", headers={"Retry-After": "5"}
        )
    return model_response(holder.current())


@router.post(
    "/admin/model:reload",
    operation_id="reloadModel",
    response_model=ModelResponse,
    responses={**ERROR_RESPONSES, 409: {"description": "Reload refused; the old model keeps serving"}},
)
def reload_model(
    principal: Admin, holder: HolderDep, session: SessionDep, metrics: MetricsDep, settings: SettingsDep
) -> ModelResponse:
    """Load the current champion and swap it in atomically; requests in flight finish on the old model."""
    try:
        snapshot = holder.reload()
    except ReloadRefused as exc:
        metrics.reloads.labels(result="refused").inc()
        repo.record_model_event(
            session,
            "reload_refused",
            name=settings.model_name,
            version=None,
            alias=settings.model_alias,
            fallback=False,
            detail=f"{principal.subject}: {exc.reason}",
        )
        session.commit()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"reload refused: {exc.reason}") from exc
    metrics.reloads.labels(result="ok").inc()
    lm = snapshot.loaded
    metrics.set_model(lm.name, lm.alias, lm.version, lm.source, lm.fallback, lm.model.trees)
    info: ModelInfo = model_info(snapshot)
    repo.record_model_event(
        session,
        "reloaded",
        name=info.name,
        version=info.version,
        alias=info.alias,
        fallback=info.fallback,
        detail=principal.subject,
    )
    session.commit()
    return model_response(snapshot)
