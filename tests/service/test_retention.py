"""Data-subject rights on SQLite and PostgreSQL: the access log, erasure across every table, retention.

Erasure is checked by scanning every row of every table of the store for the erased client's id after the
``DELETE``: only tables that keep rows on purpose (the audit log, see ``service/storage/retention.py``) may still
name it. Retention's dry run and real run must agree, row for row.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from service.cli import app as service_cli
from service.settings import Settings
from service.storage import repositories as repo
from service.storage.retention import DATA_MAP, apply_retention, plan_retention, policies
from service.storage.tables import AuditLogRow, Base, FeedbackRow, ImpressionRow
from tests.factories import make_audit, make_client
from tests.service_fixtures import ApiEnv

REF = "2025-09-01"


def _put_client(api: ApiEnv, cid: str) -> None:
    body = {
        "profile": make_client(client_id=cid).model_dump(mode="json"),
        "audit": make_audit(cid, gender="female", mother_tongue="so", country_of_origin="706").model_dump(mode="json"),
    }
    assert api.client.put(f"/v1/clients/{cid}", json=body, headers=api.auth("counsellor")).status_code == 201


def _feedback(api: ApiEnv, cid: str, event_id: str) -> None:
    event = {
        "event_id": event_id,
        "type": "decision",
        "client_id": cid,
        "opportunity_id": "hel-vac-001",
        "decision": "accepted",
        "occurred_at": "2025-09-02T10:00:00Z",
    }
    assert api.client.post("/v1/feedback", json=event, headers=api.auth("counsellor")).status_code == 201


def _rows_naming(session: Session, needle: str) -> dict[str, int]:
    """Rows of every table whose values (JSON payloads included) contain ``needle``."""
    found: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).mappings():
            if needle in json.dumps(dict(row), default=str):
                found[table.name] = found.get(table.name, 0) + 1
    return found


# ----------------------------------------------------------------------------------------------- data map
def test_data_map_lists_every_table_and_every_client_column() -> None:
    by_name = policies()
    assert set(by_name) == set(Base.metadata.tables), "every table decides erasure and retention in DATA_MAP"
    assert len(by_name) == len(DATA_MAP)
    for table in Base.metadata.sorted_tables:
        policy = by_name[table.name]
        names_people = any("client" in c.name for c in table.c)
        assert (policy.erasure != "none") == names_people, table.name
        if policy.erasure != "none":
            assert policy.client_column in table.c, table.name
        if policy.erasure == "unlink" or (policy.retention and policy.retention.action == "deidentify"):
            assert policy.deidentify is not None, table.name
        if policy.retention is not None:
            assert policy.retention.column in table.c, table.name
            assert policy.retention.period in Settings.model_fields, table.name


# ------------------------------------------------------------------------------------------------ erasure
def test_erasure_leaves_the_client_only_in_the_audit_log(api: ApiEnv) -> None:
    cid = f"erase-{uuid.uuid4().hex[:8]}"
    _put_client(api, cid)
    _feedback(api, cid, f"evt-{uuid.uuid4().hex}")
    _feedback(api, cid, f"evt-{cid}-2")  # a case tool that builds event ids from client ids
    assert api.client.get(f"/v1/clients/{cid}", headers=api.auth("counsellor")).status_code == 200
    body = {"client_id": cid, "reference_date": REF}
    assert api.client.post("/v1/suggestions", json=body, headers=api.auth("counsellor")).status_code == 200
    with api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        before = _rows_naming(s, cid)
    assert {"clients", "audit_attributes", "feedback_events", "audit_log"} <= set(before)

    r = api.client.delete(f"/v1/clients/{cid}", headers=api.auth("counsellor"))
    assert r.status_code == 200
    assert r.json()["feedback_unlinked"] == 2

    with api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        after = _rows_naming(s, cid)
        kept = {name for name, p in policies().items() if p.erasure == "keep"}
        assert set(after) <= kept, f"erased client still named in {sorted(set(after) - kept)}"
        assert after["audit_log"] == before["audit_log"] + 1, "the erasure itself is audited"
        unlinked = s.scalars(select(FeedbackRow).where(FeedbackRow.opportunity_id == "hel-vac-001")).all()
        assert sum(1 for row in unlinked if row.event_id.startswith("deid-")) >= 1, "event ids naming the client go"
    assert api.client.get(f"/v1/clients/{cid}", headers=api.auth("counsellor")).status_code == 404


# --------------------------------------------------------------------------------------------- access log
def test_access_log_lists_who_used_the_data_when_and_why(api: ApiEnv) -> None:
    cid = f"log-{uuid.uuid4().hex[:8]}"
    _put_client(api, cid)
    body = {"client_id": cid, "reference_date": REF}
    assert api.client.post("/v1/suggestions", json=body, headers=api.auth("counsellor", sub="anna")).status_code == 200
    assert api.client.get(f"/v1/clients/{cid}", headers=api.auth("counsellor", sub="ben")).status_code == 200
    url = f"/v1/clients/{cid}/access-log"

    r = api.client.get(url, headers=api.auth("counsellor", sub="carla"))
    assert r.status_code == 200, r.text
    log = r.json()
    assert (log["client_id"], log["count"], log["total"]) == (cid, 2, 2)
    assert [(e["actor"], e["role"], e["centre"], e["purpose"]) for e in log["data"]] == [
        ("ben", "counsellor", "helsinki", "client_read"),
        ("anna", "counsellor", "helsinki", "suggestions"),
    ]
    assert log["data"][1]["description"] == "suggestions were computed from the stored profile"
    assert log["data"][0]["at"] >= log["data"][1]["at"]
    assert "gender" not in r.text, "the log is about use, not about the person"

    again = api.client.get(url, params={"limit": 1, "offset": 0}, headers=api.auth("admin", None, sub="dpo")).json()
    assert (again["count"], again["total"]) == (1, 3)
    assert again["data"][0]["purpose"] == "access_log", "reading the log is itself audited"
    assert again["data"][0]["actor"] == "carla"

    for role, centre in [("counsellor", "espoo"), ("coordinator", "helsinki"), ("data_scientist", None)]:
        assert api.client.get(url, headers=api.auth(role, centre)).status_code == 403, (role, centre)
    assert api.client.get("/v1/clients/nobody-0000/access-log", headers=api.auth("counsellor")).status_code == 404
    bad = api.client.get(url, params={"limit": 0}, headers=api.auth("counsellor"))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.limit"

    # after erasure the rows stay (the record of processing): an admin can still answer the person
    assert api.client.delete(f"/v1/clients/{cid}", headers=api.auth("counsellor")).status_code == 200
    assert api.client.get(url, headers=api.auth("counsellor")).status_code == 404
    erased = api.client.get(url, headers=api.auth("admin", None)).json()
    assert erased["data"][0]["purpose"] == "erasure"


# ---------------------------------------------------------------------------------------------- retention
def _backdate(session: Session, cid: str, days: int) -> None:
    old = datetime.now(UTC) - timedelta(days=days)
    session.execute(update(AuditLogRow).where(AuditLogRow.client_id == cid).values(at=old))
    session.execute(update(FeedbackRow).where(FeedbackRow.client_id == cid).values(received_at=old))
    session.execute(update(ImpressionRow).where(ImpressionRow.client_id == cid).values(shown_at=old))


def test_retention_dry_run_and_real_run_agree(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    old_cid, new_cid = f"old-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
    for cid in (old_cid, new_cid):
        _put_client(api, cid)
        _feedback(api, cid, f"evt-{uuid.uuid4().hex}")
        _feedback(api, cid, f"evt-{cid}-x")
        assert api.client.get(f"/v1/clients/{cid}", headers=api.auth("counsellor")).status_code == 200
        shown = {"client_id": cid, "k": 2, "reference_date": REF}
        assert api.client.post("/v1/suggestions", json=shown, headers=api.auth("counsellor")).status_code == 200
    factory = api.client.app.state.session_factory  # type: ignore[attr-defined]
    assert api.client.app.state.impressions.writer.flush()  # type: ignore[attr-defined]
    with factory() as s:
        _backdate(s, old_cid, 400)
        s.execute(  # an audit row older than any test run (erased clients' rows age out too)
            insert(AuditLogRow).values(
                at=datetime.now(UTC) - timedelta(days=4000), actor="x", role="admin", client_id=None, purpose="erasure"
            )
        )
        s.commit()
    periods = {"retention_audit_days": 365, "retention_feedback_days": 365, "retention_impressions_days": 365}
    settings = api.settings.model_copy(update=periods)
    now = datetime.now(UTC)
    with factory() as s:
        plan = {i.table: i.rows for i in plan_retention(s, settings, now)}
    assert plan["feedback_events"] >= 2
    assert plan["audit_log"] >= 2
    assert plan["impressions"] >= 1

    monkeypatch.setenv("POLKU_DATABASE_URL", api.settings.database_url)
    monkeypatch.setenv("POLKU_RETENTION_AUDIT_DAYS", "365")
    monkeypatch.setenv("POLKU_RETENTION_FEEDBACK_DAYS", "365")
    monkeypatch.setenv("POLKU_RETENTION_IMPRESSIONS_DAYS", "365")
    dry = CliRunner().invoke(service_cli, ["retention"])
    assert dry.exit_code == 0, dry.output
    assert f"feedback_events: deidentify {plan['feedback_events']} rows older than 365 days" in dry.output
    assert "nothing changed" in dry.output
    with factory() as s:
        assert {i.table: i.rows for i in plan_retention(s, settings, now)} == plan, "the dry run changed nothing"
        done = {i.table: i.rows for i in apply_retention(s, settings, now)}
        s.commit()
    assert done == plan, "the real run changes exactly the rows the dry run counted"

    with factory() as s:
        after = {i.table: i.rows for i in plan_retention(s, settings, now)}
        assert after == {"feedback_events": 0, "audit_log": 0, "impressions": 0}
        old_rows = _rows_naming(s, old_cid)
        assert set(old_rows) <= {"clients", "audit_attributes"}, old_rows  # the profile itself is not retention's
        deid = s.scalars(select(FeedbackRow).where(FeedbackRow.deidentified_at.is_not(None))).all()
        assert len(deid) >= 2
        assert all(r.client_id is None and r.recorded_by is None and r.event_id.startswith("deid-") for r in deid)
        assert all("client_id" not in r.payload for r in deid)
        assert len(repo.feedback_for_clients(s, [new_cid])) == 2, "recent feedback is untouched"
        assert len(repo.audit_rows(s, new_cid)) >= 1, "recent audit rows are untouched"

    applied = CliRunner().invoke(service_cli, ["retention", "--apply"])
    assert applied.exit_code == 0, applied.output
    assert "applied:" in applied.output
