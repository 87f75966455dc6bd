"""Impressions through the real app on SQLite and PostgreSQL: ids in responses, rows per shown item, feedback
naming an impression, the export join, erasure, the shutdown flush, and exploration with exact propensities."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from models.exploration import PlackettLuce
from models.package import PolkuModel
from service.app import create_app
from service.export import export_training_data
from service.model_holder import ModelHolder
from service.storage import impressions as store
from service.storage.tables import ImpressionRow
from tests.service_fixtures import ApiEnv, make_settings, registry_from, seed_store

REF = "2025-09-01"


def _suggest(api: ApiEnv, body: dict[str, object]):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/suggestions", json={"reference_date": REF, **body}, headers=api.auth("counsellor"))


def _rows(api: ApiEnv, impression_id: str) -> list[ImpressionRow]:
    app = api.client.app
    assert app.state.impressions.writer.flush()  # type: ignore[attr-defined]
    with app.state.session_factory() as s:  # type: ignore[attr-defined]
        stmt = select(ImpressionRow).where(ImpressionRow.impression_id == impression_id)
        return sorted(s.scalars(stmt), key=lambda r: (r.kind, r.position))


def _decision(client_id: str, opportunity_id: str, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "type": "decision",
        "client_id": client_id,
        "opportunity_id": opportunity_id,
        "decision": "accepted",
        "occurred_at": "2025-09-02T10:00:00Z",
        **extra,
    }


def test_suggestions_store_one_row_per_shown_item(api: ApiEnv) -> None:
    r = _suggest(api, {"client_id": "hel-c-000", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["impression_id"]) == 32
    assert body["policy"] == "deterministic"
    assert body["explored"] is False
    shown = {(i["kind"], i["rank"], i["opportunity_id"]) for g in body["suggestions"] for i in g["items"]}
    rows = _rows(api, body["impression_id"])
    assert {(r.kind, r.position, r.opportunity_id) for r in rows} == shown
    for row in rows:
        assert row.client_id == "hel-c-000"
        assert row.surface == "suggestions"
        assert row.propensity == 1.0
        assert not row.explored
        assert row.model_version == "1"
        assert row.policy == "deterministic"


def test_refused_suggestions_store_no_impression(api: ApiEnv) -> None:
    before = _count(api, "hel-c-002")
    assert _suggest(api, {"client_id": "hel-c-002"}).status_code == 403  # no matching consent
    assert _count(api, "hel-c-002") == before == 0


def _count(api: ApiEnv, client_id: str) -> int:
    app = api.client.app
    app.state.impressions.writer.flush()  # type: ignore[attr-defined]
    with app.state.session_factory() as s:  # type: ignore[attr-defined]
        return store.count_impressions(s, client_id)


def test_candidates_store_each_shown_client(api: ApiEnv) -> None:
    url, body = "/v1/opportunities/hel-vac-000/candidates", {"k": 5, "reference_date": REF}
    r = api.client.post(url, json=body, headers=api.auth("coordinator"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["policy"] == "deterministic"
    rows = _rows(api, body["impression_id"])
    assert [(x.client_id, x.position) for x in rows] == [(c["client_id"], c["rank"]) for c in body["data"]]
    assert {x.surface for x in rows} == {"candidates"}
    assert {x.opportunity_id for x in rows} == {"hel-vac-000"}


def test_feedback_names_an_impression_that_showed_the_pair(api: ApiEnv) -> None:
    body = _suggest(api, {"client_id": "hel-c-000", "k": 3, "kinds": ["vacancy"]}).json()
    shown = body["suggestions"][0]["items"][0]["opportunity_id"]
    h = api.auth("counsellor")
    event = _decision("hel-c-000", shown, impression_id=body["impression_id"])
    ok = api.client.post("/v1/feedback", json=event, headers=h)
    assert ok.status_code == 201, ok.text
    unknown = api.client.post(
        "/v1/feedback", json=_decision("hel-c-000", shown, impression_id=uuid.uuid4().hex), headers=h
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.impression_id"
    other = api.client.post(
        "/v1/feedback", json=_decision("hel-c-000", "hel-tr-finnish", impression_id=body["impression_id"]), headers=h
    )
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "body.impression_id"
    malformed = api.client.post("/v1/feedback", json=_decision("hel-c-000", shown, impression_id="x"), headers=h)
    assert malformed.status_code == 422
    assert "impression_id" in malformed.json()["errors"][0]["field"]


def test_export_joins_feedback_to_the_impression(api: ApiEnv, tmp_path: Path) -> None:
    body = _suggest(api, {"client_id": "hel-c-000", "k": 2, "kinds": ["vacancy"]}).json()
    item = body["suggestions"][0]["items"][1]
    event = _decision("hel-c-000", item["opportunity_id"], impression_id=body["impression_id"])
    assert api.client.post("/v1/feedback", json=event, headers=api.auth("counsellor")).status_code == 201
    app = api.client.app
    with app.state.session_factory() as s:  # type: ignore[attr-defined]
        report = export_training_data(s, tmp_path / "x.jsonl", salt=b"salt")
    assert report.impressions >= 2
    lines = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    joined = [x for x in lines if x["kind"] == "feedback" and x["impression"] is not None]
    mine = [x for x in joined if x["event"]["opportunity_id"] == item["opportunity_id"]]
    assert mine
    assert mine[-1]["impression"]["position"] == 2
    assert mine[-1]["impression"]["propensity"] == 1.0
    pseud = mine[-1]["event"]["impression_id"]
    assert pseud != body["impression_id"]
    assert any(x["kind"] == "impression" and x["impression"]["impression_id"] == pseud for x in lines)
    assert body["impression_id"] not in (tmp_path / "x.jsonl").read_text()
    assert "hel-c-000" not in (tmp_path / "x.jsonl").read_text()


def test_erasure_deletes_the_clients_impressions(api: ApiEnv) -> None:
    assert _suggest(api, {"client_id": "hel-c-004", "k": 2}).status_code == 200
    assert _count(api, "hel-c-004") > 0
    assert api.client.delete("/v1/clients/hel-c-004", headers=api.auth("counsellor")).status_code == 200
    assert _count(api, "hel-c-004") == 0


def test_shutdown_writes_queued_impressions(db_url: str, small_model: PolkuModel, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, impression_flush_ms=600_000)  # the thread never flushes by itself
    holder = ModelHolder(settings, registry_loader=registry_from({"model": small_model, "version": "1"}))
    app = create_app(settings, model_holder=holder)
    with TestClient(app) as client:
        env = ApiEnv(client, settings, holder, {})
        seed_store(env)
        r = client.post("/v1/suggestions", json={"client_id": "hel-c-000", "k": 2}, headers=env.auth("counsellor"))
        assert r.status_code == 200
        impression_id = r.json()["impression_id"]
        assert app.state.impressions.writer.backlog > 0
    with app.state.session_factory() as s:
        stored = s.scalars(select(ImpressionRow).where(ImpressionRow.impression_id == impression_id)).all()
    assert len(stored) == sum(g["count"] for g in r.json()["suggestions"])


def test_exploration_keeps_the_top_samples_below_with_exact_propensities(
    db_url: str, small_model: PolkuModel, tmp_path: Path
) -> None:
    settings = make_settings(db_url, tmp_path, exploration="2.0")
    holder = ModelHolder(settings, registry_loader=registry_from({"model": small_model, "version": "1"}))
    app = create_app(settings, model_holder=holder)
    with TestClient(app) as client:
        env = ApiEnv(client, settings, holder, {})
        seed_store(env)
        req = {"client_id": "hel-c-003", "kinds": ["vacancy"], "k": 6, "reference_date": REF}
        slates = [client.post("/v1/suggestions", json=req, headers=env.auth("counsellor")).json() for _ in range(12)]
        every = _suggest_env(env, {**req, "k": 50})["suggestions"]
        eligible_ids = {i["opportunity_id"] for i in every[0]["items"]}  # type: ignore[index]
        assert app.state.impressions.writer.flush()
        with app.state.session_factory() as s:
            rows = {
                b["impression_id"]: sorted(
                    s.scalars(select(ImpressionRow).where(ImpressionRow.impression_id == b["impression_id"])),
                    key=lambda x: x.position,
                )
                for b in slates
            }
    policy = PlackettLuce(2.0)
    assert all(b["policy"] == policy.name for b in slates)
    tops = {tuple(i["opportunity_id"] for i in b["suggestions"][0]["items"][:3]) for b in slates}
    assert len(tops) == 1  # places 1-3 never move
    assert any(b["explored"] for b in slates)
    for b in slates:
        shown = [i["opportunity_id"] for i in b["suggestions"][0]["items"]]
        assert set(shown) <= eligible_ids  # exploration never shows an ineligible item
        props = [x.propensity for x in rows[b["impression_id"]]]
        assert props[:3] == [1.0, 1.0, 1.0]
        assert all(0.0 < p <= 1.0 for p in props)
        assert all(x.explored == b["explored"] for x in rows[b["impression_id"]])


def _suggest_env(env: ApiEnv, body: dict[str, object]) -> dict[str, object]:
    r = env.client.post("/v1/suggestions", json=body, headers=env.auth("counsellor"))
    assert r.status_code == 200, r.text
    result: dict[str, object] = r.json()
    return result


def test_exploration_setting_fails_fast_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="POLKU_EXPLORATION"):
        make_settings("sqlite://", tmp_path, exploration="lots")
    assert make_settings("sqlite://", tmp_path).exploration == "off"


def test_erasure_removes_impressions_still_queued(db_url: str, small_model: PolkuModel, tmp_path: Path) -> None:
    """The writer holds the slate when the client is erased: the erasure stores it first, then deletes it."""
    settings = make_settings(db_url, tmp_path, impression_flush_ms=600_000)
    holder = ModelHolder(settings, registry_loader=registry_from({"model": small_model, "version": "1"}))
    app = create_app(settings, model_holder=holder)
    with TestClient(app) as client:
        env = ApiEnv(client, settings, holder, {})
        seed_store(env)
        h = env.auth("counsellor")
        assert client.post("/v1/suggestions", json={"client_id": "hel-c-008", "k": 2}, headers=h).status_code == 200
        assert app.state.impressions.writer.backlog > 0
        assert client.delete("/v1/clients/hel-c-008", headers=h).status_code == 200
        assert app.state.impressions.writer.forget("hel-c-008") == 0
    with app.state.session_factory() as s:
        assert store.count_impressions(s, "hel-c-008") == 0


def test_forget_drops_queued_rows_of_one_client() -> None:
    from service.impressions import ImpressionWriter

    writer = ImpressionWriter(60.0)
    writer.submit([{"client_id": "a"}, {"client_id": "b"}, {"client_id": "a"}])
    assert writer.forget("a") == 2
    assert writer.backlog == 1
