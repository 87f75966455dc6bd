"""Storage on SQLite and PostgreSQL: migrations, repositories, consent filters, erasure, world load, export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from features.events import DecisionEvent
from features.records import ClientProfile
from service.export import export_training_data
from service.storage import repositories as repo
from service.storage.db import make_engine, make_session_factory, migrate, ping
from service.storage.tables import Base
from service.world_io import load_world
from tests.factories import make_audit, make_client, make_opportunity
from tests.service_fixtures import tiny_audit, tiny_catalogue, tiny_clients


@pytest.fixture(scope="module")
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    migrate(eng)  # idempotent
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_session_factory(engine)() as s:
        yield s


def test_migrations_match_the_tables(engine: Engine) -> None:
    assert ping(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_client_roundtrip_consent_filter_and_erasure(session: Session) -> None:
    a = make_client(client_id="st-a-001", consent={"matching": True, "share_with_coordinators": True})
    b = make_client(client_id="st-b-001", consent={"matching": True, "share_with_coordinators": False})
    c = make_client(client_id="st-c-001", consent={"matching": False, "share_with_coordinators": True})
    assert repo.upsert_client(session, a, make_audit("st-a-001"))
    assert not repo.upsert_client(session, a, make_audit("st-a-001", gender="male"))
    repo.upsert_clients(session, [b, c])
    session.commit()
    assert repo.get_client(session, "st-a-001") == a
    assert repo.get_audit_attributes(session, "st-a-001").gender == "male"  # type: ignore[union-attr]
    shared = {p.client_id for p in repo.shareable_clients(session, "helsinki")}
    assert "st-a-001" in shared
    assert "st-b-001" not in shared
    assert "st-c-001" not in shared
    event = DecisionEvent(
        event_id="evt-st-000001",
        client_id="st-a-001",
        opportunity_id="opp-1",
        decision="accepted",
        occurred_at=datetime(2025, 9, 2, tzinfo=UTC),
    )
    assert repo.record_feedback(session, event, recorded_by="t").status == "created"
    session.commit()
    assert repo.delete_client(session, "st-a-001")
    session.commit()
    assert repo.get_client(session, "st-a-001") is None
    assert repo.get_audit_attributes(session, "st-a-001") is None
    row = session.get(repo.FeedbackRow, "evt-st-000001")
    assert row is not None
    assert row.client_id is None
    assert "client_id" not in row.payload
    assert not repo.delete_client(session, "st-a-001")


def test_feedback_idempotency(session: Session) -> None:
    event = DecisionEvent(
        event_id="evt-st-000002",
        client_id="st-x-001",
        opportunity_id="opp-1",
        decision="rejected",
        reason_code="timing",
        occurred_at=datetime(2025, 9, 2, tzinfo=UTC),
    )
    first = repo.record_feedback(session, event, recorded_by="t")
    session.commit()
    again = repo.record_feedback(session, event, recorded_by="t")
    other = repo.record_feedback(session, event.model_copy(update={"reason_code": "travel"}), recorded_by="t")
    assert (first.status, again.status, other.status) == ("created", "duplicate", "conflict")
    assert again.received_at == first.received_at


def test_opportunities_list_filter_and_fingerprint(session: Session) -> None:
    before = repo.catalogue_fingerprint(session)
    repo.upsert_opportunities(
        session,
        [make_opportunity(opportunity_id="st-o-001"), make_opportunity(opportunity_id="st-o-002", kind="work_trial")],
    )
    session.commit()
    after = repo.catalogue_fingerprint(session)
    assert after != before
    trials, total = repo.list_opportunities(session, kind="work_trial")
    assert total >= 1
    assert all(o.kind == "work_trial" for o in trials)
    assert repo.delete_opportunity(session, "st-o-002")
    assert not repo.delete_opportunity(session, "st-o-002")
    session.commit()
    assert repo.catalogue_fingerprint(session) != after


def _write_world(directory: Path) -> list[ClientProfile]:
    directory.mkdir(parents=True, exist_ok=True)
    clients = tiny_clients()
    pd.DataFrame(
        {"client_id": [c.client_id for c in clients], "profile": [c.model_dump_json() for c in clients]}
    ).to_parquet(directory / "clients.parquet")
    pd.DataFrame([a.model_dump(mode="json") for a in tiny_audit(clients)]).to_parquet(directory / "audit.parquet")
    with (directory / "opportunities.jsonl").open("w") as fh:
        for o in tiny_catalogue():
            fh.write(o.model_dump_json() + "\n")
    return clients


def test_load_world_is_bulk_and_idempotent(session: Session, tmp_path: Path) -> None:
    clients = _write_world(tmp_path / "world")
    first = load_world(session, tmp_path / "world")
    second = load_world(session, tmp_path / "world")
    assert first.clients == second.clients == len(clients)
    assert second.new_clients == 0
    assert second.new_opportunities == 0
    assert repo.get_client(session, clients[0].client_id) == clients[0]
    assert repo.get_audit_attributes(session, clients[0].client_id) is not None


def test_export_only_consenting_deidentified_without_audit(session: Session, tmp_path: Path) -> None:
    _write_world(tmp_path / "world")
    load_world(session, tmp_path / "world")
    out = export_training_data(session, tmp_path / "export.jsonl", salt=b"s")
    lines = [json.loads(line) for line in out.path.read_text().splitlines()]
    profiles = [ClientProfile.model_validate(r["profile"], strict=False) for r in lines if r["kind"] == "client"]
    assert profiles
    assert all(p.consent.model_training for p in profiles)
    stored = {c.client_id for c in tiny_clients()}
    text = out.path.read_text()
    assert not any(cid in text for cid in stored)
    assert all(p.client_id.startswith("anon-") for p in profiles)
    assert "mother_tongue" not in text
    assert "gender" not in text
    consenting = sum(1 for p in repo.training_clients(session))
    assert out.clients == consenting
