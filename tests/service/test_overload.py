"""Graceful overload: a bounded number of requests in flight per worker, 503 + Retry-After at once past it.

The middleware is tested on a tiny ASGI app whose requests wait on an event (so "in flight" is exact), and once
through the real app (its settings, its routes, its ``/metrics``) with a route held open by the test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.package import PolkuModel
from service import cli
from service.app import create_app
from service.metrics import ServiceMetrics
from service.middleware import LoadShedMiddleware
from service.model_holder import ModelHolder
from tests.service_fixtures import ApiEnv, make_settings, registry_from, seed_store


class _Held:
    """An ASGI app whose answers wait until released (every request stays in flight until then)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, path: str, method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


def _shed_count(metrics: ServiceMetrics, route: str) -> float:
    value = metrics.registry.get_sample_value("polku_requests_shed_total", {"route": route})
    return float(value or 0.0)


def test_past_the_limit_requests_get_503_with_retry_after_at_once_and_are_counted() -> None:
    async def scenario() -> None:
        held = _Held()
        metrics = ServiceMetrics()
        app = LoadShedMiddleware(
            held,
            limit=2,
            reserve=1,
            max_age_s=60.0,
            retry_after_s=3,
            metrics=metrics,
            route_of=lambda scope: SimpleNamespace(path=scope["path"]),
        )
        first = [asyncio.create_task(_call(app, "/v1/suggestions")) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert held.entered == 2
        assert metrics.registry.get_sample_value("polku_requests_in_flight") == 2

        status, headers, body = await asyncio.wait_for(_call(app, "/v1/suggestions"), timeout=1.0)
        assert (status, headers["retry-after"]) == (503, "3")
        assert "retry later" in json.loads(body)["errors"][0]["reason"]
        assert held.entered == 2, "the shed request never reached the app"
        assert _shed_count(metrics, "/v1/suggestions") == 1

        # health, readiness and metrics are never shed and do not count
        probes = [asyncio.create_task(_call(app, p, "GET")) for p in ("/healthz", "/readyz", "/metrics")]
        await asyncio.sleep(0.01)
        assert held.entered == 5
        # feedback may use the reserve: stored, not turned away
        feedback = asyncio.create_task(_call(app, "/v1/feedback"))
        await asyncio.sleep(0.01)
        assert held.entered == 6
        # the reserve is full too: feedback is answered 503 (never dropped silently)
        status, headers, _ = await asyncio.wait_for(_call(app, "/v1/feedback"), timeout=1.0)
        assert (status, headers["retry-after"]) == (503, "3")
        assert _shed_count(metrics, "/v1/feedback") == 1

        held.release.set()
        results = await asyncio.gather(*first, *probes, feedback)
        assert [r[0] for r in results] == [200] * 6
        assert metrics.registry.get_sample_value("polku_requests_in_flight") == 0
        assert await _call(app, "/v1/suggestions") == (200, {}, b"ok")

    asyncio.run(scenario())


def test_while_the_oldest_request_runs_too_long_only_the_floor_and_feedback_are_admitted() -> None:
    async def scenario() -> None:
        held = _Held()
        metrics = ServiceMetrics()
        now = [0.0]
        app = LoadShedMiddleware(
            held,
            limit=8,
            reserve=2,
            max_age_s=0.1,
            floor=2,
            retry_after_s=1,
            metrics=metrics,
            route_of=lambda scope: SimpleNamespace(path=scope["path"]),
            clock=lambda: now[0],
        )
        tasks = [asyncio.create_task(_call(app, "/v1/suggestions")) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert held.entered == 3, "young requests are admitted up to the limit"
        now[0] = 0.5  # the core is shared: the oldest request has run 500 ms
        assert (await _call(app, "/v1/opportunities/x/candidates"))[0] == 503
        tasks.append(asyncio.create_task(_call(app, "/v1/feedback")))  # a short write skips the age bound
        await asyncio.sleep(0.01)
        assert held.entered == 4
        held.release.set()
        assert [r[0] for r in await asyncio.gather(*tasks)] == [200] * 4

        # a model reload is never shed and not counted, but while it runs only the floor is admitted
        held.release.clear()
        reload = asyncio.create_task(_call(app, "/v1/admin/model:reload"))
        await asyncio.sleep(0.01)
        assert (held.entered, app.in_flight) == (5, 0)
        now[0] = 1.0  # the reload has run 500 ms
        beside = [asyncio.create_task(_call(app, "/v1/suggestions")) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert held.entered == 7, "the floor runs beside the reload"
        assert (await _call(app, "/v1/suggestions"))[0] == 503
        held.release.set()
        assert [r[0] for r in await asyncio.gather(reload, *beside)] == [200] * 3
        # once the slow requests are answered, the floor is free again and new requests are admitted
        held.release.clear()
        first = asyncio.create_task(_call(app, "/v1/suggestions"))
        await asyncio.sleep(0.01)
        now[0] = 6.0
        second = asyncio.create_task(_call(app, "/v1/suggestions"))
        await asyncio.sleep(0.01)
        assert held.entered == 9, "below the floor, age does not matter"
        assert (await _call(app, "/v1/suggestions"))[0] == 503
        held.release.set()
        await asyncio.gather(first, second)
        assert _shed_count(metrics, "/v1/suggestions") == 2
        assert _shed_count(metrics, "/v1/opportunities/x/candidates") == 1

    asyncio.run(scenario())


@pytest.fixture
def blocked_app(small_model: PolkuModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiEnv]:
    """The real app with ``max_in_flight=1`` whose ``GET /v1/model`` waits until the test releases it."""
    settings = make_settings(f"sqlite:///{tmp_path / 'polku.db'}", tmp_path, max_in_flight=1, feedback_reserve=1)
    holder = ModelHolder(settings, registry_loader=registry_from({"model": small_model, "version": "1"}))
    app = create_app(settings, model_holder=holder)
    with TestClient(app) as client:
        env = ApiEnv(client, settings, holder, {})
        seed_store(env)
        yield env


def test_the_app_sheds_past_its_limit_keeps_health_and_feedback_and_exposes_counts(
    blocked_app: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.routers import model as model_router

    api = blocked_app
    entered, release = threading.Event(), threading.Event()
    original = model_router.model_response

    def slow_model_response(snapshot: Any) -> Any:
        entered.set()
        release.wait(10)
        return original(snapshot)

    monkeypatch.setattr(model_router, "model_response", slow_model_response)
    holder_thread = threading.Thread(target=lambda: api.client.get("/v1/model", headers=api.auth("admin", None)))
    holder_thread.start()
    try:
        assert entered.wait(10), "the held request is in flight"
        shed = api.client.post("/v1/suggestions", json={"client_id": "hel-c-000"}, headers=api.auth("counsellor"))
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == str(api.settings.overload_retry_after_s)
        assert shed.json()["errors"][0]["reason"].startswith("server busy")
        assert shed.headers["x-content-type-options"] == "nosniff", "security headers on shed answers too"
        assert api.client.get("/healthz").status_code == 200
        assert api.client.get("/readyz").status_code == 200
        event = {
            "event_id": "evt-overload-1",
            "type": "outcome",
            "client_id": "hel-c-001",
            "opportunity_id": "hel-vac-002",
            "outcome": "started",
            "occurred_at": "2025-10-01T08:00:00Z",
        }
        assert api.client.post("/v1/feedback", json=event, headers=api.auth("counsellor")).status_code == 201
        text = api.client.get("/metrics", headers=api.auth("data_scientist", None)).text
    finally:
        release.set()
        holder_thread.join(10)
    assert 'polku_requests_shed_total{route="/v1/suggestions"} 1.0' in text
    assert "polku_requests_in_flight_limit 1.0" in text
    assert "polku_requests_in_flight " in text
    # after the held request finished, the worker admits again
    ok = api.client.post("/v1/suggestions", json={"client_id": "hel-c-000"}, headers=api.auth("counsellor"))
    assert ok.status_code == 200


def test_polku_serve_keeps_idle_connections_longer_than_clients_do() -> None:
    """The dropped connection of ``make loadtest``: see ``benchmarks/keepalive_race.py``."""
    import httpx

    settings = make_settings("sqlite://", Path("."))
    config = cli.uvicorn_config(object(), settings, "127.0.0.1", 8000, "info")
    httpx_idle_expiry = httpx.Limits().keepalive_expiry
    assert httpx_idle_expiry is not None
    assert config.timeout_keep_alive == settings.keep_alive_s >= 60 > httpx_idle_expiry
