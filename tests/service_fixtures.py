"""Service test fixtures: SQLite and PostgreSQL databases, a small real model, the app and tokens.

Register in ``tests/conftest.py`` with ``pytest_plugins = ["tests.service_fixtures"]``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.pairs import PairBatch, PairFeaturizer
from features.records import AuditAttributes, ClientProfile, Opportunity
from models.package import PolkuModel
from service.app import create_app
from service.auth import mint_token
from service.model_holder import ModelHolder
from service.settings import Settings
from tests.factories import REFERENCE_DATE, make_audit, make_client, make_opportunity, make_training, occupation_skills

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def _pg_available() -> bool:
    import psycopg

    for attempt in range(2):
        try:
            with psycopg.connect(PG_ADMIN_DSN):
                return True
        except psycopg.OperationalError:
            if attempt == 0:
                subprocess.run(  # noqa: S603 - fixed command, test setup only
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                    shell=True,  # noqa: S602
                    check=False,
                    capture_output=True,
                    timeout=30,
                )
    return False


def pg_unavailable(reason: str) -> None:
    """Skip a PostgreSQL test, or fail it when ``CI`` is set: a CI run must not pass without PostgreSQL."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so PostgreSQL tests fail instead of skipping)", pytrace=False)
    pytest.skip(reason)


def fresh_pg_database(prefix: str) -> Iterator[str]:
    """Create a new PostgreSQL database, yield its URL, drop it afterwards.

    When no server can be reached (even after trying to start it) the test is skipped, or fails when ``CI``
    is set.
    """
    if not _pg_available():
        pg_unavailable("PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started")
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh empty database URL: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'polku.db'}"
        return
    yield from fresh_pg_database("polku_test")


def tiny_catalogue() -> list[Opportunity]:
    """Helsinki vacancies, trainings and a work trial, and one Espoo vacancy."""
    essential, optional = occupation_skills()
    items: list[Opportunity] = []
    for i in range(8):
        items.append(
            make_opportunity(
                opportunity_id=f"hel-vac-{i:03d}",
                required_skills={"essential": essential[i % 5 : i % 5 + 4], "optional": optional[:2]},
                min_language={"fi": ["A1.1", "A2.1", "B1.1"][i % 3]},
                seats=1 + i,
            )
        )
    items.append(make_opportunity(opportunity_id="hel-trial-001", kind="work_trial", min_language={}))
    items.append(make_training(opportunity_id="hel-tr-degree"))
    items.append(
        make_training(
            opportunity_id="hel-tr-finnish",
            route="language",
            min_language={},
            s2_support=False,
            required_skills={"essential": [], "optional": []},
            completion={"language_reached": {"fi": "B1.1"}},
            duration_weeks=20.0,
        )
    )
    items.append(make_opportunity(opportunity_id="hel-full-001", seats=2, seats_taken=2))
    items.append(make_opportunity(opportunity_id="esp-vac-001", centre="espoo", municipality="049"))
    return items


def tiny_clients() -> list[ClientProfile]:
    """Helsinki clients with a spread of skills, Finnish levels and consents, plus two Espoo clients."""
    essential, _ = occupation_skills()
    levels = ["A1.1", "A2.1", "B1.1", "B2.1"]
    consents = [
        {"matching": True, "share_with_coordinators": True, "model_training": True},
        {"matching": True, "share_with_coordinators": False, "model_training": False},
        {"matching": False, "share_with_coordinators": True, "model_training": True},
        {"matching": True, "share_with_coordinators": True, "model_training": False},
    ]
    clients = [
        make_client(
            client_id=f"hel-c-{i:03d}",
            skills=[{"uri": u, "level": 1 + (i + j) % 4} for j, u in enumerate(essential[i % 6 : i % 6 + 3])],
            languages=[{"language": "fi", "level": levels[i % 4]}],
            consent=consents[i % 4],
        )
        for i in range(12)
    ]
    clients += [
        make_client(client_id=f"esp-c-{i:03d}", centre="espoo", constraints={"municipality": "049"}) for i in range(2)
    ]
    return clients


def tiny_audit(clients: list[ClientProfile]) -> list[AuditAttributes]:
    """Audit attributes with distinctive values (tests look for them in responses and logs)."""
    return [make_audit(c.client_id, gender="female", mother_tongue="so", country_of_origin="706") for c in clients]


@pytest.fixture(scope="session")
def small_model() -> PolkuModel:
    """A real outcome-aware PolkuModel (LightGBM acceptance + outcome stages) trained on a tiny synthetic set."""
    from models.outcome import OutcomeAwareRanker

    clients, items = tiny_clients(), tiny_catalogue()
    ci, oi = np.meshgrid(np.arange(len(clients)), np.arange(len(items)), indexing="ij")
    batch = PairBatch(clients, items, ci.ravel(), oi.ravel())
    featurizer = PairFeaturizer(reference_date=REFERENCE_DATE).fit(batch, acceptance={})
    X = featurizer.transform(batch)
    names = [str(n) for n in featurizer.get_feature_names_out()]
    signal = X[:, names.index("ess_cov")] - 0.3 * X[:, names.index("lang_gap_best")]
    y = np.digitize(signal, np.quantile(signal, [0.5, 0.7, 0.85, 0.95]))  # 0 shown .. 4 employed
    ranker = OutcomeAwareRanker(num_boost_round=10, params={"min_data_in_leaf": 5, "num_threads": 1})
    ranker.fit(X, y, batch.client_idx, feature_names=names)
    return PolkuModel(featurizer, ranker, {"name": "polku-ranker", "version": "test"})


@dataclass
class ApiEnv:
    """A running app (lifespan entered) with its settings, holder and token maker."""

    client: TestClient
    settings: Settings
    holder: ModelHolder
    registry: dict[str, object]

    def token(self, role: str, centre: str | None = "helsinki", sub: str | None = None) -> str:
        """A valid token."""
        return mint_token(self.settings, role=role, centre=centre, subject=sub)

    def auth(self, role: str, centre: str | None = "helsinki", sub: str | None = None) -> dict[str, str]:
        """Authorization header for a role and centre."""
        return {"Authorization": f"Bearer {self.token(role, centre, sub)}"}


def make_settings(db: str, data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test app (registry on, served by an injected loader)."""
    values: dict[str, object] = {"database_url": db, "data_dir": data_dir, "registry_enabled": True, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


def registry_from(state: dict[str, object]) -> Callable[[Settings], tuple[PolkuModel, str | None]]:
    """A registry loader serving ``state["model"]`` as version ``state["version"]`` (or raising ``state["error"]``)."""

    def load(_settings: Settings) -> tuple[PolkuModel, str | None]:
        error = state.get("error")
        if isinstance(error, BaseException):
            raise error
        model = state["model"]
        assert isinstance(model, PolkuModel)
        return model, str(state.get("version", "1"))

    return load


def seed_store(env: ApiEnv) -> None:
    """PUT the tiny catalogue and clients through the API (as coordinators and counsellors of each centre)."""
    for opp in tiny_catalogue():
        r = env.client.put(
            f"/v1/opportunities/{opp.opportunity_id}",
            content=opp.model_dump_json(),
            headers={**env.auth("coordinator", opp.centre), "content-type": "application/json"},
        )
        assert r.status_code in (200, 201), r.text
    clients = tiny_clients()
    for client, audit in zip(clients, tiny_audit(clients), strict=True):
        body = {"profile": client.model_dump(mode="json"), "audit": audit.model_dump(mode="json")}
        r = env.client.put(f"/v1/clients/{client.client_id}", json=body, headers=env.auth("counsellor", client.centre))
        assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def api(db_url: str, small_model: PolkuModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:
    """The real app on a fresh database (SQLite and PostgreSQL), serving the small model as champion v1."""
    settings = make_settings(db_url, tmp_path_factory.mktemp("data"))
    state: dict[str, object] = {"model": small_model, "version": "1"}
    holder = ModelHolder(settings, registry_loader=registry_from(state))
    app = create_app(settings, model_holder=holder)
    with TestClient(app) as client:
        env = ApiEnv(client, settings, holder, state)
        seed_store(env)
        yield env
