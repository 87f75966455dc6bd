"""Faults: MLflow down at start, corrupt/incompatible model on reload, database cut mid-load, SIGTERM in flight.

Each test states the fault it injects and what the service must do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from benchmarks.loadtest import free_port
from models.package import PolkuModel
from models.packaging import load_local, save_local
from service.app import create_app
from service.auth import mint_token
from service.model_holder import ModelHolder
from service.settings import Settings
from service.storage import repositories as repo
from service.storage.db import make_engine, make_session_factory, migrate
from service.storage.tables import FeedbackRow, ImpressionRow, ModelEventRow
from tests.service_fixtures import (
    PG_ADMIN_DSN,
    ApiEnv,
    fresh_pg_database,
    make_settings,
    registry_from,
    seed_store,
    tiny_audit,
    tiny_catalogue,
    tiny_clients,
)

REF = "2025-09-01"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


def _auth(settings: Settings, role: str, centre: str | None = "helsinki") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, role=role, centre=centre)}"}


def _event(client_id: str = "hel-c-001") -> dict[str, object]:
    return {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "type": "outcome",
        "client_id": client_id,
        "opportunity_id": "hel-vac-002",
        "outcome": "started",
        "occurred_at": "2025-10-01T08:00:00Z",
    }


# ------------------------------------------------------------------------------------ MLflow down at start
def test_mlflow_unreachable_at_start_serves_the_local_cache_and_reports_degraded(
    small_model: PolkuModel, tmp_path: Path
) -> None:
    """Fault: MLFLOW_TRACKING_URI is a dead http server. Expect: the cached champion serves, /readyz degraded."""
    settings = make_settings(
        f"sqlite:///{tmp_path / 'polku.db'}", tmp_path, mlflow_tracking_uri=f"http://127.0.0.1:{_closed_port()}"
    )
    cached = PolkuModel(small_model.featurizer, small_model.ranker, {**small_model.metadata, "registry_version": "7"})
    save_local(cached, settings.model_cache_dir)
    start = time.monotonic()
    with TestClient(create_app(settings)) as c:  # the real registry loader, no injection
        assert time.monotonic() - start < 30, "a dead tracking server must fail fast"
        ready = c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["reason"] == "serving from cache"
        assert ready.json()["model"] == {"name": "polku-ranker", "version": "7", "alias": "champion", "fallback": False}
        seed_store(ApiEnv(c, settings, c.app.state.model_holder, {}))  # type: ignore[attr-defined]
        r = c.post(
            "/v1/suggestions",
            json={"client_id": "hel-c-000", "reference_date": REF},
            headers=_auth(settings, "counsellor"),
        )
        assert r.status_code == 200, r.text
        assert r.json()["model"]["version"] == "7"
        reload = c.post("/v1/admin/model:reload", headers=_auth(settings, "admin", None))
        assert reload.status_code == 409
        assert "unreachable" in reload.json()["errors"][0]["reason"] or "polku-ranker" in reload.text


# ------------------------------------------------------------------------------ corrupt or incompatible model
def _bundle_loader(bundle: Path, version: str):  # type: ignore[no-untyped-def]
    """A registry loader reading a model bundle from disk (real files, so corruption is real)."""

    def load(_settings: Settings) -> tuple[PolkuModel, str | None]:
        return load_local(bundle), version

    return load


@pytest.mark.parametrize("damage", ["truncated-featurizer", "missing-ranker", "other-taxonomy", "bad-json-metadata"])
def test_corrupt_or_incompatible_model_is_refused_and_the_old_one_keeps_serving(
    small_model: PolkuModel, tmp_path: Path, damage: str
) -> None:
    """Fault: the new champion's files are corrupt or made for another taxonomy. Expect: 409 + reason, v1 serves."""
    settings = make_settings(f"sqlite:///{tmp_path / 'polku.db'}", tmp_path / "data")
    state: dict[str, object] = {"model": small_model, "version": "1"}
    holder = ModelHolder(settings, registry_loader=registry_from(state))
    with TestClient(create_app(settings, model_holder=holder)) as c:
        seed_store(ApiEnv(c, settings, holder, state))
        bundle = save_local(small_model, tmp_path / "v2")
        files = {p.name: p for p in bundle.rglob("*") if p.is_file()}
        if damage == "truncated-featurizer":
            path = next(p for name, p in files.items() if "featurizer" in name)
            path.write_text(path.read_text()[:200])
        elif damage == "missing-ranker":
            for name, p in files.items():
                if "featurizer" not in name and "metadata" not in name:
                    p.unlink()
        elif damage == "other-taxonomy":
            path = next(p for name, p in files.items() if "metadata" in name)
            meta = json.loads(path.read_text())
            meta["taxonomy_version"] = "esco-v0.0-other"
            path.write_text(json.dumps(meta))
        else:
            path = next(p for name, p in files.items() if "metadata" in name)
            path.write_text("{not json")
        holder._registry_loader = _bundle_loader(bundle, "2")
        admin = _auth(settings, "admin", None)
        r = c.post("/v1/admin/model:reload", headers=admin)
        assert r.status_code == 409, r.text
        reason = r.json()["errors"][0]["reason"]
        assert reason.startswith("reload refused: ")
        assert len(reason) > len("reload refused: ") + 5
        body = {"client_id": "hel-c-000", "reference_date": REF}
        served = c.post("/v1/suggestions", json=body, headers=_auth(settings, "counsellor"))
        assert served.status_code == 200
        assert served.json()["model"]["version"] == "1"
        assert c.get("/v1/model", headers=admin).json()["model"]["version"] == "1"
        assert c.get("/readyz").json()["status"] == "ok"
        with c.app.state.session_factory() as s:  # type: ignore[attr-defined]
            events = s.scalars(select(ModelEventRow).where(ModelEventRow.event == "reload_refused"))
            assert [e.detail for e in events], "a refused reload is recorded"


def test_model_with_non_finite_scores_is_refused(small_model: PolkuModel, tmp_path: Path) -> None:
    """Fault: a loadable model that scores NaN. Expect: its smoke test fails, 409, the old model serves."""
    import numpy as np

    class NanRanker(type(small_model.ranker)):  # type: ignore[misc]
        def score(self, X: np.ndarray) -> np.ndarray:
            return np.full(len(X), np.nan)

    broken_ranker = NanRanker.__new__(NanRanker)
    broken_ranker.__dict__.update(small_model.ranker.__dict__)
    broken = PolkuModel(small_model.featurizer, broken_ranker, dict(small_model.metadata))
    settings = make_settings(f"sqlite:///{tmp_path / 'polku.db'}", tmp_path)
    state: dict[str, object] = {"model": small_model, "version": "1"}
    holder = ModelHolder(settings, registry_loader=registry_from(state))
    with TestClient(create_app(settings, model_holder=holder)) as c:
        seed_store(ApiEnv(c, settings, holder, state))
        body = {"client_id": "hel-c-000", "reference_date": REF}
        assert c.post("/v1/suggestions", json=body, headers=_auth(settings, "counsellor")).status_code == 200
        state.update(model=broken, version="2")
        r = c.post("/v1/admin/model:reload", headers=_auth(settings, "admin", None))
        assert r.status_code == 409
        assert "non-finite" in r.text or "smoke test" in r.text
        assert holder.current().loaded.version == "1"


# ----------------------------------------------------------------------------------- database cut mid-load
def _feedback_under_fire(client: TestClient, settings: Settings, n: int, cut: threading.Event) -> dict[str, int]:
    """Send ``n`` feedback events from 4 threads; returns event id -> status (``cut`` is set half-way)."""
    headers = _auth(settings, "counsellor")
    results: dict[str, int] = {}
    lock = threading.Lock()

    def send(i: int) -> None:
        if i == n // 2:
            cut.set()
        event = _event()
        r = client.post("/v1/feedback", json=event, headers=headers)
        if r.status_code >= 500:
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) > 0
        with lock:
            results[str(event["event_id"])] = r.status_code

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(n)))
    return results


def _stored_ids(session_factory) -> set[str]:  # type: ignore[no-untyped-def]
    with session_factory() as s:
        return set(s.scalars(select(FeedbackRow.event_id)))


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_pg_database("polku_fault")


@pytest.mark.postgres
def test_postgres_connections_terminated_mid_load_lose_no_accepted_feedback(
    pg_url: str, small_model: PolkuModel, tmp_path: Path
) -> None:
    """Fault: pg_terminate_backend kills every service connection mid-load (twice).

    Expect: each request either succeeds or gets 503 + Retry-After; every event answered 2xx is stored; the
    service recovers by itself (pre-ping) and takes writes again.
    """
    import psycopg

    settings = make_settings(pg_url, tmp_path)
    state: dict[str, object] = {"model": small_model, "version": "1"}
    holder = ModelHolder(settings, registry_loader=registry_from(state))
    dbname = pg_url.rsplit("/", 1)[1]
    with TestClient(create_app(settings, model_holder=holder)) as c:
        seed_store(ApiEnv(c, settings, holder, state))
        cut = threading.Event()
        killed: list[int] = []

        def killer() -> None:
            cut.wait(30)
            for _ in range(2):
                with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                    rows = admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                        "pg_backend_pid()",
                        (dbname,),
                    ).fetchall()
                killed.append(len(rows))
                time.sleep(0.05)

        t = threading.Thread(target=killer)
        t.start()
        results = _feedback_under_fire(c, settings, 120, cut)
        t.join()
        assert sum(killed) >= 1, "the fault was not injected"
        accepted = {eid for eid, status in results.items() if status in (200, 201)}
        assert accepted, results
        assert set(results.values()) <= {200, 201, 503}
        stored = _stored_ids(c.app.state.session_factory)  # type: ignore[attr-defined]
        assert accepted <= stored, f"lost {len(accepted - stored)} accepted events"
        r = c.post("/v1/feedback", json=_event(), headers=_auth(settings, "counsellor"))
        assert r.status_code == 201, "the service recovers after the connections come back"


def test_sqlite_store_cut_mid_load_gives_503_and_loses_no_accepted_feedback(
    small_model: PolkuModel, tmp_path: Path
) -> None:
    """Fault: mid-load the store becomes unreachable (its engine is swapped for a dead one), then comes back.

    Expect: 503 + Retry-After while it is gone, no 500, and every event answered 2xx is stored.
    """
    settings = make_settings(f"sqlite:///{tmp_path / 'polku.db'}", tmp_path)
    state: dict[str, object] = {"model": small_model, "version": "1"}
    holder = ModelHolder(settings, registry_loader=registry_from(state))
    with TestClient(create_app(settings, model_holder=holder)) as c:
        seed_store(ApiEnv(c, settings, holder, state))
        app = c.app
        good = app.state.session_factory  # type: ignore[attr-defined]
        # a store that cannot be opened (its directory does not exist): every connect fails
        dead = create_engine(f"sqlite:///{tmp_path / 'gone' / 'x.db'}")
        cut = threading.Event()

        def cutter() -> None:
            cut.wait(30)
            app.state.session_factory = make_session_factory(dead)  # type: ignore[attr-defined]
            time.sleep(0.3)
            app.state.session_factory = good  # type: ignore[attr-defined]

        t = threading.Thread(target=cutter)
        t.start()
        results = _feedback_under_fire(c, settings, 200, cut)
        t.join()
        assert 503 in results.values(), "the outage was not observed"
        assert set(results.values()) <= {200, 201, 503}
        accepted = {eid for eid, status in results.items() if status in (200, 201)}
        assert accepted <= _stored_ids(good)
        dead.dispose()


# ------------------------------------------------------------------------------------------------ SIGTERM
def _prepare_store(data_dir: Path) -> None:
    engine = make_engine(f"sqlite:///{data_dir / 'polku.db'}")
    migrate(engine)
    clients = tiny_clients()
    with make_session_factory(engine)() as s:
        repo.upsert_opportunities(s, tiny_catalogue())
        repo.upsert_clients(s, clients, tiny_audit(clients))
        s.commit()
    engine.dispose()


def test_sigterm_lets_in_flight_requests_finish_then_exits_zero(tmp_path: Path) -> None:
    """Fault: SIGTERM to ``polku serve`` while requests are in flight.

    Expect: requests whose bodies are still arriving all complete with 200, new connections are refused,
    and the process exits with status 0, having stored the impressions of those answers (the writer never
    flushes by itself here: only the shutdown writes them).
    """
    _prepare_store(tmp_path)
    port = free_port()
    secret = "sigterm-test-secret-0123456789-abcdefghijkl"
    env = {
        **os.environ,
        "POLKU_DATA_DIR": str(tmp_path),
        "POLKU_DATABASE_URL": f"sqlite:///{tmp_path / 'polku.db'}",
        "POLKU_REGISTRY_ENABLED": "false",
        "POLKU_JWT_SECRET": secret,
        "POLKU_GRACEFUL_SHUTDOWN_S": "20",
        # five requests in flight at once on purpose: admission control is not what this test is about
        "POLKU_MAX_IN_FLIGHT": "16",
        "POLKU_OVERLOAD_AGE_MS": "60000",
        "POLKU_IMPRESSION_FLUSH_MS": "600000",
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "polku", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        settings = Settings(jwt_secret=secret)  # type: ignore[arg-type]
        token = mint_token(settings, role="counsellor", centre="helsinki")
        body = json.dumps({"client_id": "hel-c-000", "reference_date": REF, "include_paths": True}).encode()
        # requests whose bodies are only half sent when SIGTERM arrives: in flight, deterministically
        head = (
            f"POST /v1/suggestions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        in_flight = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(5)]
        for sock in in_flight:
            sock.sendall(head + body[:10])
        time.sleep(0.5)  # the server has accepted them and is reading the bodies
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "the server must wait for the in-flight requests"
        with pytest.raises(httpx.HTTPError):  # no new connections once shutting down
            httpx.get(f"{base}/healthz", timeout=2)
        for sock in in_flight:
            sock.sendall(body[10:])
        for sock in in_flight:
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response += chunk
            sock.close()
            assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert proc.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()[-2000:]
        engine = make_engine(f"sqlite:///{tmp_path / 'polku.db'}")
        with make_session_factory(engine)() as s:
            shown = s.execute(select(ImpressionRow.impression_id, ImpressionRow.client_id)).all()
        engine.dispose()
        assert len({impression for impression, _ in shown}) == 5, "every answered slate is stored at SIGTERM"
        assert {client for _, client in shown} == {"hel-c-000"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
