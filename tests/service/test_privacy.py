"""Privacy: erasure (DELETE /v1/clients/{id}) and the de-identified training export (consenting clients only)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from features.records import ClientProfile
from service.cli import app as service_cli
from service.storage import repositories as repo
from service.storage.tables import AuditAttributeRow, ClientRow, FeedbackRow
from tests.factories import make_audit, make_client
from tests.service_fixtures import ApiEnv, tiny_clients

_STAMPS = iter(range(10**6))


def _feedback(api: ApiEnv, client_id: str, centre: str = "helsinki", outcome: str = "started") -> str:
    """Post an outcome; returns its event id (the export replaces ids, so each event also has a unique time)."""
    n = next(_STAMPS)
    event = {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "type": "outcome",
        "client_id": client_id,
        "opportunity_id": "hel-vac-001",
        "outcome": outcome,
        "occurred_at": f"2024-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:{uuid.uuid4().int % 60:02d}Z",
    }
    r = api.client.post("/v1/feedback", json=event, headers=api.auth("counsellor", centre))
    assert r.status_code == 201, r.text
    _OCCURRED[str(event["event_id"])] = str(event["occurred_at"])
    return str(event["event_id"])


_OCCURRED: dict[str, str] = {}


def _has_event(records: list[dict[str, object]], event_id: str) -> bool:
    """The event is in the export (matched by its unique time; ids are pseudonymised there)."""
    when = _OCCURRED[event_id].replace("Z", "")
    return any(r["kind"] == "feedback" and str(r["event"]["occurred_at"]).startswith(when) for r in records)  # type: ignore[index]


def test_delete_erases_profile_and_audit_attributes_and_unlinks_feedback(api: ApiEnv) -> None:
    cid = f"erase-{uuid.uuid4().hex[:8]}"
    profile = make_client(client_id=cid, age=47)
    audit = make_audit(cid, gender="male", mother_tongue="ti", country_of_origin="232")
    h = api.auth("counsellor")
    body = {"profile": profile.model_dump(mode="json"), "audit": audit.model_dump(mode="json")}
    assert api.client.put(f"/v1/clients/{cid}", json=body, headers=h).status_code == 201
    events = [_feedback(api, cid), _feedback(api, cid, outcome="completed")]
    other = _feedback(api, "hel-c-001")

    r = api.client.delete(f"/v1/clients/{cid}", headers=h)
    assert r.status_code == 200
    assert r.json() == {"id": cid, "deleted": True, "feedback_unlinked": 2}
    assert api.client.get(f"/v1/clients/{cid}", headers=h).status_code == 404
    r = api.client.post("/v1/suggestions", json={"client_id": cid}, headers=h)
    assert r.status_code == 404

    with api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        assert s.get(ClientRow, cid) is None
        assert s.get(AuditAttributeRow, cid) is None
        for eid in events:
            row = s.get(FeedbackRow, eid)
            assert row is not None, "feedback stays (for learning) but no longer points at the person"
            assert row.client_id is None
            assert cid not in json.dumps(row.payload)
        assert s.get(FeedbackRow, other).client_id == "hel-c-001"  # type: ignore[union-attr]
        linked = s.scalars(select(FeedbackRow.event_id).where(FeedbackRow.client_id == cid)).all()
        assert linked == []
        purposes = [row.purpose for row in repo.audit_rows(s, cid)]
        assert purposes[-1] == "erasure"


def test_delete_is_limited_to_counsellors_of_the_centre(api: ApiEnv) -> None:
    cid = f"erase-{uuid.uuid4().hex[:8]}"
    body = {"profile": make_client(client_id=cid).model_dump(mode="json")}
    assert api.client.put(f"/v1/clients/{cid}", json=body, headers=api.auth("counsellor")).status_code == 201
    for role, centre in [("counsellor", "espoo"), ("coordinator", "helsinki"), ("data_scientist", None)]:
        assert api.client.delete(f"/v1/clients/{cid}", headers=api.auth(role, centre)).status_code == 403
    assert api.client.delete(f"/v1/clients/{cid}", headers=api.auth("counsellor")).status_code == 200


def _export(api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    monkeypatch.setenv("POLKU_DATABASE_URL", api.settings.database_url)
    monkeypatch.setenv("POLKU_DATA_DIR", str(api.settings.data_dir))
    out = tmp_path / "export" / "training.jsonl"
    result = CliRunner().invoke(service_cli, ["export-training-data", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_export_contains_only_consenting_clients_de_identified(
    api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helsinki = [c for c in tiny_clients() if c.centre == "helsinki"]
    training = {c.client_id for c in helsinki if c.consent.model_training}
    refusing = {c.client_id for c in helsinki if not c.consent.model_training}
    assert training
    assert refusing
    fb_yes = _feedback(api, sorted(training)[0])
    fb_no = _feedback(api, sorted(refusing)[0])

    records = _export(api, tmp_path, monkeypatch)
    text = json.dumps(records)
    assert records[0]["kind"] == "meta"
    profiles: list[dict[str, str]] = [r["profile"] for r in records if r["kind"] == "client"]  # type: ignore[misc]
    events: list[dict[str, str]] = [r["event"] for r in records if r["kind"] == "feedback"]  # type: ignore[misc]
    assert len(profiles) >= len(training)
    for p in profiles:
        profile = ClientProfile.model_validate(p, strict=False)
        assert profile.consent.model_training is True
        assert profile.client_id.startswith("anon-")
    for cid in training | refusing:  # no real id, consenting or not, appears anywhere
        assert f'"{cid}"' not in text
    for word in ("gender", "mother_tongue", "country_of_origin", '"706"', "recorded_by", "attacker"):
        assert word not in text
    pseudonyms = {p["client_id"] for p in profiles}
    assert all(e["client_id"] in pseudonyms for e in events), "feedback only of exported clients"
    assert fb_yes not in text, "event ids are pseudonymised too"
    assert fb_no not in text
    assert _has_event(records, fb_yes)
    assert not _has_event(records, fb_no)
    again = _export(api, tmp_path, monkeypatch)
    again_ids = {r["profile"]["client_id"] for r in again if r["kind"] == "client"}  # type: ignore[index]
    assert again_ids.isdisjoint(pseudonyms), "a fresh salt per export: exports cannot be linked"


def test_export_after_consent_withdrawal_and_erasure(
    api: ApiEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = f"wd-{uuid.uuid4().hex[:8]}"
    h = api.auth("counsellor")
    profile = make_client(client_id=cid, age=61)
    assert (
        api.client.put(f"/v1/clients/{cid}", json={"profile": profile.model_dump(mode="json")}, headers=h).status_code
        == 201
    )
    eid = _feedback(api, cid)
    before = _export(api, tmp_path, monkeypatch)
    assert _has_event(before, eid)
    withdrawn = profile.model_copy(update={"consent": profile.consent.model_copy(update={"model_training": False})})
    r = api.client.put(f"/v1/clients/{cid}", json={"profile": withdrawn.model_dump(mode="json")}, headers=h)
    assert r.status_code == 200
    after = _export(api, tmp_path, monkeypatch)
    assert not _has_event(after, eid)
    assert not any(r["kind"] == "client" and r["profile"]["age"] == 61 for r in after)  # type: ignore[index]
    assert api.client.delete(f"/v1/clients/{cid}", headers=h).status_code == 200
    erased = _export(api, tmp_path, monkeypatch)
    assert not _has_event(erased, eid)
