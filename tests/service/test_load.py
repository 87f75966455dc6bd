"""10-second load test with a model swap against the real server (uvicorn subprocess), via benchmarks.loadtest.

Mixed suggestions, candidates and feedback at 100 req/s; in the middle a new version is registered, moved to
``@champion`` and reloaded. Zero errors, every ranking answer names the old or the new version (never none),
nothing started after the reload is served by the old model, no request times out, and every feedback event is
accepted (503s are retried after ``Retry-After``) and stored.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from benchmarks.loadtest import (
    MODEL_NAME,
    Targets,
    Tokens,
    reload,
    run_load,
    running_server,
    server_env,
    set_champion,
    stored_feedback,
)
from models.package import PolkuModel
from service.storage import repositories as repo
from service.storage.db import make_engine, make_session_factory, migrate
from tests.service_fixtures import tiny_audit, tiny_catalogue, tiny_clients

logger = logging.getLogger(__name__)
pytestmark = pytest.mark.xdist_group("load")


@dataclass
class LoadEnv:
    """A prepared data directory: store, registry with ``@champion`` = v1, and the server's secret."""

    data_dir: Path
    tracking_uri: str
    secret: str


def _register(model: PolkuModel, tracking_uri: str) -> str:
    """Log and register ``model`` in a private MLflow store (restoring the process-wide tracking URI)."""
    import mlflow

    from models.packaging import log_polku_model

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        exp = mlflow.get_experiment_by_name("loadtest")
        artifacts = Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"  # never ./mlruns in the cwd
        exp_id = (
            exp.experiment_id if exp else mlflow.create_experiment("loadtest", artifact_location=artifacts.as_uri())
        )
        with mlflow.start_run(experiment_id=exp_id):
            info = log_polku_model(model, registered_model_name=MODEL_NAME)
    finally:
        mlflow.set_tracking_uri(previous)
    return str(info.registered_model_version)


def _reregister(tracking_uri: str) -> str:
    """Register the champion's model again as a new version and promote it (what a retrain ends with)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)  # the model source (models:/m-...) resolves against the global store
    try:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        current = client.get_model_version_by_alias(MODEL_NAME, "champion")
        created = client.create_model_version(
            MODEL_NAME, str(current.source), run_id=current.run_id, model_id=getattr(current, "model_id", None)
        )
    finally:
        mlflow.set_tracking_uri(previous)
    set_champion(tracking_uri, str(created.version))
    return str(created.version)


@pytest.fixture(scope="module")
def load_env(small_model: PolkuModel, tmp_path_factory: pytest.TempPathFactory) -> LoadEnv:
    data_dir = tmp_path_factory.mktemp("load")
    engine = make_engine(f"sqlite:///{data_dir / 'polku.db'}")
    migrate(engine)
    clients = tiny_clients()
    with make_session_factory(engine)() as s:
        repo.upsert_opportunities(s, tiny_catalogue())
        repo.upsert_clients(s, clients, tiny_audit(clients))
        s.commit()
    engine.dispose()
    tracking = f"sqlite:///{data_dir / 'mlflow.db'}"
    set_champion(tracking, _register(small_model, tracking))
    return LoadEnv(data_dir, tracking, secrets.token_urlsafe(48))


def _targets() -> Targets:
    clients = [(c.client_id, c.centre) for c in tiny_clients() if c.consent.matching]
    return Targets(clients, [(o.opportunity_id, o.centre) for o in tiny_catalogue()])


@pytest.fixture(scope="module")
def server(load_env: LoadEnv) -> Iterator[str]:
    env = server_env(load_env.data_dir, load_env.secret)
    with running_server(env, load_env.data_dir / "server.log") as url:
        yield url


def test_ten_seconds_of_mixed_load_with_a_model_swap(load_env: LoadEnv, server: str) -> None:
    tokens = Tokens(load_env.secret)

    async def swap(client: httpx.AsyncClient) -> tuple[int, str | None]:
        await asyncio.to_thread(_reregister, load_env.tracking_uri)
        return await reload(client, tokens)

    report = asyncio.run(
        run_load(server, _targets(), tokens, duration_s=10.0, rate=100.0, swap=swap, swap_at=0.4, after_s=3.0)
    )
    logger.info("\n%s", report.render())
    assert report.reload_status == 200
    assert (report.old_version, report.new_version) == ("1", "2")
    assert report.errors() == [], report.errors()[:5]
    assert report.version_problems() == []
    table = {row["phase"]: row for row in report.table()}
    assert all(table[p]["requests"] > 0 for p in ("before", "during", "after")), report.render()
    assert table["after"]["versions"] == "2"
    assert len(report.samples) >= 900
    kinds = {s.kind for s in report.samples}
    assert kinds == {"suggestions", "candidates", "feedback"}
    assert report.timeouts() == []
    assert all(s.retry_after for s in report.samples if s.shed), "every 503 says when to retry"
    accepted = report.feedback_accepted()
    assert accepted, "feedback was recorded"
    stored = stored_feedback(f"sqlite:///{load_env.data_dir / 'polku.db'}", accepted)
    assert report.feedback_lost(stored) == []
