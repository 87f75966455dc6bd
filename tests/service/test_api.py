"""API tests through the real app on SQLite and PostgreSQL: endpoints, roles × centres × consent, audit."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from models.package import ModelLoadError, PolkuModel
from models.packaging import save_local
from service.app import create_app
from service.auth import mint_token
from service.model_holder import ModelHolder
from service.storage import repositories as repo
from service.storage.db import make_engine, make_session_factory
from tests.factories import make_client, make_opportunity
from tests.service_fixtures import ApiEnv, make_settings, registry_from, tiny_clients

REF = "2025-09-01"


def _audit(api: ApiEnv, client_id: str) -> list[tuple[str, str, str | None]]:
    with api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        return [(r.role, r.purpose, r.centre) for r in repo.audit_rows(s, client_id)]


def _suggest(api: ApiEnv, body: dict[str, object], role: str = "counsellor", centre: str = "helsinki"):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/suggestions", json={"reference_date": REF, **body}, headers=api.auth(role, centre))


# ------------------------------------------------------------------------------------------- suggestions
def test_suggestions_for_stored_client_name_the_model_and_are_audited(api: ApiEnv) -> None:
    before = len(_audit(api, "hel-c-000"))
    r = _suggest(api, {"client_id": "hel-c-000", "k": 3, "lang": "en"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "polku-ranker", "version": "1", "alias": "champion", "fallback": False}
    kinds = {g["kind"]: g for g in body["suggestions"]}
    assert set(kinds) == {"training", "work_trial", "vacancy"}
    assert 1 <= kinds["vacancy"]["count"] <= 3
    assert [i["rank"] for i in kinds["vacancy"]["items"]] == list(range(1, kinds["vacancy"]["count"] + 1))
    assert body["excluded"]["by_reason"]["other_centre"] >= 1
    assert all(i["opportunity_id"] != "esp-vac-001" for g in body["suggestions"] for i in g["items"])
    items = [i for g in body["suggestions"] for i in g["items"]]
    assert items
    for item in items:  # what the client may take up, and what is likely to work, beside the score
        assert 0.0 <= item["p_accept"] <= 1.0
        assert item["expected_outcome"] >= -1.0
        assert item["score"] == pytest.approx(item["expected_outcome"], abs=1e-3)  # accept weight 0 by default
    assert len(_audit(api, "hel-c-000")) == before + 1
    assert _audit(api, "hel-c-000")[-1] == ("counsellor", "suggestions", "helsinki")


def test_inline_profile_needs_matching_consent_and_is_audited(api: ApiEnv) -> None:
    refusing = make_client(client_id="inline-no", consent={"matching": False})
    assert _suggest(api, {"client": refusing.model_dump(mode="json")}).status_code == 403
    assert _audit(api, "inline-no") == []
    consenting = make_client(client_id="inline-yes")
    assert _suggest(api, {"client": consenting.model_dump(mode="json"), "k": 1}).status_code == 200
    assert _audit(api, "inline-yes") == [("counsellor", "suggestions_inline", "helsinki")]


def test_suggestions_explain_gaps_with_remedies_and_named_exclusions(api: ApiEnv) -> None:
    client = make_client(centre="helsinki", languages=[{"language": "fi", "level": "A1.3"}])
    r = _suggest(
        api,
        {
            "client": client.model_dump(mode="json"),
            "kinds": ["vacancy"],
            "k": 10,
            "explain": ["hel-full-001", "esp-vac-001", "nope-000"],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    named = {n["opportunity_id"]: n for n in body["excluded"]["named"]}
    assert named["hel-full-001"]["reason"] == "no_seats"
    assert named["esp-vac-001"]["reason"] == "other_centre"
    assert named["nope-000"]["status"] == "unknown"
    items = body["suggestions"][0]["items"]
    lang_gaps = [g for i in items for g in i["gaps"] if g["type"] == "language"]
    assert lang_gaps, "A1.3 Finnish should show language gaps"
    assert any(rem["opportunity_id"] == "hel-tr-finnish" for g in lang_gaps for rem in g["remedies"])
    assert all(isinstance(i["needs_te_decision"], bool) for i in items)


def test_suggestions_consent_centre_and_role_rules(api: ApiEnv) -> None:
    assert _suggest(api, {"client_id": "hel-c-002"}).status_code == 403  # no matching consent
    assert _suggest(api, {"client_id": "hel-c-000"}, centre="espoo").status_code == 403
    assert _suggest(api, {"client_id": "hel-c-000"}, role="coordinator").status_code == 403
    assert _suggest(api, {"client_id": "hel-c-000"}, role="data_scientist", centre="helsinki").status_code == 403
    assert _suggest(api, {"client_id": "hel-c-000"}, role="admin").status_code == 200
    assert _suggest(api, {"client_id": "zzz-unknown"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"client_id": "hel-c-000", "k": 0}, "body.k"),
        ({"client_id": "hel-c-000", "k": 51}, "body.k"),
        ({"client_id": "hel-c-000", "lang": "de"}, "body.lang"),
        ({"client_id": "hel-c-000", "kinds": ["vacancy", "vacancy"]}, "body"),
        ({}, "body"),
    ],
)
def test_suggestions_bad_input_names_the_field(api: ApiEnv, body: dict[str, object], field: str) -> None:
    r = _suggest(api, body)
    assert r.status_code == 422
    assert any(e["field"] == field for e in r.json()["errors"]), r.text


def test_validation_errors_never_echo_submitted_values(api: ApiEnv, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client().model_dump(mode="json")
    secret_skill = "http://data.europa.eu/esco/skill/00000000-1111-2222-3333-444455556666"
    client["skills"] = [{"uri": secret_skill, "level": 2}]
    client["age"] = 177
    caplog.set_level(logging.DEBUG)
    r = _suggest(api, {"client": client})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert "body.client.skills.0.uri" in fields
    assert "body.client.age" in fields
    assert secret_skill not in r.text
    assert "177" not in r.text
    assert "input" not in r.json()["errors"][0]
    assert secret_skill not in caplog.text
    assert "177" not in caplog.text


# -------------------------------------------------------------------------------------------- candidates
def test_candidates_only_consenting_clients_of_the_centre_without_audit_attributes(api: ApiEnv) -> None:
    r = api.client.post(
        "/v1/opportunities/hel-vac-000/candidates",
        json={"k": 50, "reference_date": REF},
        headers=api.auth("coordinator"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    consenting = {
        c.client_id
        for c in tiny_clients()
        if c.centre == "helsinki" and c.consent.share_with_coordinators and c.consent.matching
    }
    returned = {c["client_id"] for c in body["data"]}
    assert returned
    assert returned <= consenting
    assert body["considered"] == len(consenting)
    assert body["model"]["version"] == "1"
    text = r.text
    for word in ("gender", "mother_tongue", "country_of_origin", '"so"', "706", "female"):
        assert word not in text
    assert [c["rank"] for c in body["data"]] == list(range(1, len(body["data"]) + 1))
    for cid in returned:
        assert ("coordinator", "candidates", "helsinki") in _audit(api, cid)
    again = api.client.post(
        "/v1/opportunities/hel-vac-000/candidates",
        json={"k": 50, "reference_date": REF},
        headers=api.auth("coordinator"),
    )
    assert again.json()["data"] == body["data"]  # cached rows give the same ranking


def test_candidates_role_centre_and_unknown(api: ApiEnv) -> None:
    url = "/v1/opportunities/hel-vac-000/candidates"
    assert api.client.post(url, json={}, headers=api.auth("coordinator", "espoo")).status_code == 403
    assert api.client.post(url, json={}, headers=api.auth("counsellor")).status_code == 403
    assert api.client.post(url, headers=api.auth("admin", None)).status_code == 200
    assert (
        api.client.post("/v1/opportunities/nope-404/candidates", json={}, headers=api.auth("coordinator")).status_code
        == 404
    )
    assert api.client.post(url, json={"k": 0}, headers=api.auth("coordinator")).status_code == 422


# ----------------------------------------------------------------------------------------------- clients
def test_client_put_get_delete_unlinks_feedback(api: ApiEnv) -> None:
    cid = f"tmp-{uuid.uuid4().hex[:8]}"
    client = make_client(client_id=cid)
    h = api.auth("counsellor")
    body = {"profile": client.model_dump(mode="json"), "audit": {"client_id": cid, "gender": "male"}}
    assert api.client.put(f"/v1/clients/{cid}", json=body, headers=h).status_code == 201
    assert api.client.put(f"/v1/clients/{cid}", json=body, headers=h).status_code == 200
    got = api.client.get(f"/v1/clients/{cid}", headers=h)
    assert got.status_code == 200
    assert got.json()["profile"]["client_id"] == cid
    assert "gender" not in got.text
    assert ("counsellor", "client_read", "helsinki") in _audit(api, cid)
    assert api.client.get(f"/v1/clients/{cid}", headers=api.auth("counsellor", "espoo")).status_code == 403
    assert api.client.get(f"/v1/clients/{cid}", headers=api.auth("coordinator")).status_code == 403
    event = {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "type": "decision",
        "client_id": cid,
        "opportunity_id": "hel-vac-001",
        "decision": "accepted",
        "occurred_at": "2025-09-02T10:00:00Z",
    }
    assert api.client.post("/v1/feedback", json=event, headers=h).status_code == 201
    deleted = api.client.delete(f"/v1/clients/{cid}", headers=h)
    assert deleted.status_code == 200
    assert deleted.json()["feedback_unlinked"] == 1
    assert api.client.get(f"/v1/clients/{cid}", headers=h).status_code == 404
    assert api.client.delete(f"/v1/clients/{cid}", headers=h).status_code == 404
    with api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        assert repo.get_audit_attributes(s, cid) is None
        assert repo.feedback_for_clients(s, [cid]) == []
        row = s.get(repo.FeedbackRow, event["event_id"])
        assert row is not None
        assert row.client_id is None
        assert "client_id" not in row.payload


def test_client_put_rules(api: ApiEnv) -> None:
    client = make_client(client_id="mismatch-01")
    body = {"profile": client.model_dump(mode="json")}
    r = api.client.put("/v1/clients/other-id-01", json=body, headers=api.auth("counsellor"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.profile.client_id"
    assert (
        api.client.put("/v1/clients/mismatch-01", json=body, headers=api.auth("counsellor", "espoo")).status_code == 403
    )
    # a client of another centre cannot be taken over by re-PUTting it under one's own centre
    esp = make_client(client_id="esp-c-000", centre="helsinki")
    r = api.client.put(
        "/v1/clients/esp-c-000", json={"profile": esp.model_dump(mode="json")}, headers=api.auth("counsellor")
    )
    assert r.status_code == 403


# ----------------------------------------------------------------------------------------- opportunities
def test_opportunities_crud_and_list(api: ApiEnv) -> None:
    h = api.auth("coordinator")
    listed = api.client.get("/v1/opportunities?kind=vacancy&centre=helsinki", headers=api.auth("counsellor"))
    assert listed.status_code == 200
    data = listed.json()
    assert data["total"] >= 8
    assert all(o["kind"] == "vacancy" and o["centre"] == "helsinki" for o in data["data"])
    opp = make_opportunity(opportunity_id="tmp-opp-001")
    url = "/v1/opportunities/tmp-opp-001"
    assert (
        api.client.put(
            url, content=opp.model_dump_json(), headers={**h, "content-type": "application/json"}
        ).status_code
        == 201
    )
    assert api.client.get(url, headers=h).json()["opportunity"]["opportunity_id"] == "tmp-opp-001"
    r = _suggest(api, {"client_id": "hel-c-003", "kinds": ["vacancy"], "k": 50})
    assert "tmp-opp-001" in {i["opportunity_id"] for i in r.json()["suggestions"][0]["items"]}
    assert api.client.delete(url, headers=api.auth("coordinator", "espoo")).status_code == 403
    assert api.client.delete(url, headers=h).status_code == 200
    assert api.client.get(url, headers=h).status_code == 404
    r = _suggest(api, {"client_id": "hel-c-003", "kinds": ["vacancy"], "k": 50})
    assert "tmp-opp-001" not in {i["opportunity_id"] for i in r.json()["suggestions"][0]["items"]}
    esp = make_opportunity(opportunity_id="tmp-opp-002", centre="espoo", municipality="049")
    assert (
        api.client.put(
            "/v1/opportunities/tmp-opp-002",
            content=esp.model_dump_json(),
            headers={**h, "content-type": "application/json"},
        ).status_code
        == 403
    )


# ---------------------------------------------------------------------------------------------- feedback
def test_feedback_is_idempotent_by_event_id(api: ApiEnv) -> None:
    h = api.auth("counsellor")
    event = {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "type": "outcome",
        "client_id": "hel-c-001",
        "opportunity_id": "hel-vac-002",
        "outcome": "started",
        "occurred_at": "2025-10-01T08:00:00Z",
    }
    first = api.client.post("/v1/feedback", json=event, headers=h)
    assert first.status_code == 201
    again = api.client.post("/v1/feedback", json=event, headers=h)
    assert again.status_code == 200
    assert again.json() == {**first.json(), "status": "duplicate"}
    changed = api.client.post("/v1/feedback", json={**event, "outcome": "completed"}, headers=h)
    assert changed.status_code == 409
    bad = api.client.post("/v1/feedback", json={**event, "event_id": "evt-bad-000001", "outcome": "married"}, headers=h)
    assert bad.status_code == 422
    assert "married" not in bad.text
    assert api.client.post("/v1/feedback", json=event, headers=api.auth("data_scientist", None)).status_code == 403
    assert (
        api.client.post(
            "/v1/feedback",
            json={**event, "event_id": f"evt-{uuid.uuid4().hex}"},
            headers=api.auth("counsellor", "espoo"),
        ).status_code
        == 403
    )


# ------------------------------------------------------------------------------------------ model, health
def test_model_info_reload_and_refused_reload(api: ApiEnv) -> None:
    h = api.auth("data_scientist", None)
    info = api.client.get("/v1/model", headers=h).json()
    assert info["model"]["version"] == "1"
    assert info["source"] == "registry"
    assert not info["degraded"]
    assert api.client.post("/v1/admin/model:reload", headers=h).status_code == 403
    admin = api.auth("admin", None)
    api.registry["version"] = "2"
    r = api.client.post("/v1/admin/model:reload", headers=admin)
    assert r.status_code == 200
    assert r.json()["model"]["version"] == "2"
    api.registry["error"] = ModelLoadError("models:/polku-ranker/3: featurizer.json corrupt")
    try:
        r = api.client.post("/v1/admin/model:reload", headers=admin)
        assert r.status_code == 409
        assert "corrupt" in r.json()["errors"][0]["reason"]
        assert _suggest(api, {"client_id": "hel-c-000"}).json()["model"]["version"] == "2"
    finally:
        api.registry.pop("error")
        api.registry["version"] = "1"
        assert api.client.post("/v1/admin/model:reload", headers=admin).status_code == 200


def test_health_ready_metrics(api: ApiEnv) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    assert _suggest(api, {"client_id": "hel-c-000", "k": 1}).status_code == 200  # this test's own traffic
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=api.auth("counsellor")).status_code == 403
    text = api.client.get("/metrics", headers=api.auth("admin", None)).text
    assert 'polku_http_request_duration_seconds_count{method="POST",route="/v1/suggestions"' in text
    assert "polku_model_version{" in text
    assert "polku_suggestions_served_total" in text
    assert "polku_fallback_answers_total" in text


# -------------------------------------------------------------------------------------------- security
def test_every_route_but_health_requires_a_token(api: ApiEnv) -> None:
    open_routes = {"/healthz", "/readyz"}
    checked = 0
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or route.path in open_routes:
            continue
        checked += 1
        path = route.path.replace("{client_id}", "hel-c-000").replace("{opportunity_id}", "hel-vac-000")
        for method in route.methods:
            r = api.client.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.status_code)
            bad = api.client.request(method, path, json={}, headers={"Authorization": "Bearer not-a-jwt"})
            assert bad.status_code == 401
    assert checked >= 14, "routes must be enumerable (no wrapped routers)"


def test_body_cap_headers_and_cors(api: ApiEnv) -> None:
    big = b'{"client_id": "hel-c-000", "pad": "' + b"x" * (api.settings.max_body_bytes + 10) + b'"}'
    r = api.client.post(
        "/v1/suggestions", content=big, headers={**api.auth("counsellor"), "content-type": "application/json"}
    )
    assert r.status_code == 413

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b" " * 32768

    r = api.client.post(
        "/v1/suggestions", content=chunks(), headers={**api.auth("counsellor"), "content-type": "application/json"}
    )
    assert r.status_code == 413
    r = api.client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    pre = api.client.options(
        "/v1/suggestions", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in pre.headers


def test_openapi_has_examples_and_needs_a_token(api: ApiEnv) -> None:
    assert api.client.get("/openapi.json").status_code == 401
    spec = api.client.get("/openapi.json", headers=api.auth("data_scientist", None)).json()
    assert "/v1/suggestions" in spec["paths"]
    assert "examples" in json.dumps(spec["components"]["schemas"]["SuggestionsRequest"])


# ------------------------------------------------------------------------------------------------ faults
def test_fallback_model_when_no_champion_and_no_cache(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    holder = ModelHolder(settings, registry_loader=registry_from({"error": ModelLoadError("registry down")}))
    with TestClient(create_app(settings, model_holder=holder)) as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert ready["model"]["fallback"] is True
        h = {"Authorization": f"Bearer {mint_token(settings, role='counsellor', centre='helsinki')}"}
        r = c.post("/v1/suggestions", json={"client_id": "hel-c-003", "reference_date": REF}, headers=h)
        assert r.status_code == 200
        assert r.json()["model"]["fallback"] is True
        items = [i for g in r.json()["suggestions"] for i in g["items"]]
        assert all(i["p_accept"] is None and i["expected_outcome"] is None for i in items)
        admin = {"Authorization": f"Bearer {mint_token(settings, role='admin', centre=None)}"}
        assert "polku_fallback_answers_total 1.0" in c.get("/metrics", headers=admin).text
        assert c.post("/v1/admin/model:reload", headers=admin).status_code == 409


def test_local_cache_serves_when_registry_is_down(
    api: ApiEnv, db_url: str, tmp_path: Path, small_model: PolkuModel
) -> None:
    assert (api.settings.model_cache_dir / "metadata.json").exists()  # written by the champion load
    settings = make_settings(db_url, tmp_path)
    model = PolkuModel(small_model.featurizer, small_model.ranker, {**small_model.metadata, "registry_version": "5"})
    save_local(model, settings.model_cache_dir)
    holder = ModelHolder(settings, registry_loader=registry_from({"error": ModelLoadError("registry down")}))
    with TestClient(create_app(settings, model_holder=holder)) as c:
        ready = c.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert ready["model"] == {"name": "polku-ranker", "version": "5", "alias": "champion", "fallback": False}


def test_database_unreachable_gives_503_with_retry_after(api: ApiEnv) -> None:
    app = api.client.app
    good = app.state.session_factory  # type: ignore[attr-defined]
    bad_engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    app.state.session_factory = make_session_factory(bad_engine)  # type: ignore[attr-defined]
    try:
        event = {
            "event_id": f"evt-{uuid.uuid4().hex}",
            "type": "outcome",
            "client_id": "hel-c-001",
            "opportunity_id": "hel-vac-002",
            "outcome": "started",
            "occurred_at": "2025-10-01T08:00:00Z",
        }
        r = api.client.post("/v1/feedback", json=event, headers=api.auth("counsellor"))
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) > 0
        body = {"profile": make_client(client_id="down-0001").model_dump(mode="json")}
        r = api.client.put("/v1/clients/down-0001", json=body, headers=api.auth("counsellor"))
        assert r.status_code == 503
        assert "retry-after" in r.headers
    finally:
        app.state.session_factory = good  # type: ignore[attr-defined]
        bad_engine.dispose()


def test_paths_chain_step_after_step(api: ApiEnv) -> None:
    client = make_client(client_id="path-0001", languages=[{"language": "fi", "level": "A1.1"}])
    r = _suggest(api, {"client": client.model_dump(mode="json"), "include_paths": True, "k": 2, "lang": "fi"})
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    assert paths, "a Finnish course should open a path to the cook vacancies"
    assert len(paths) <= 3
    for path in paths:
        steps = path["steps"]
        assert steps[-1]["kind"] in ("vacancy", "work_trial")
        for before, after in zip(steps, steps[1:], strict=False):
            end = date.fromisoformat(before["start"]) + timedelta(weeks=before["weeks"])
            assert date.fromisoformat(after["start"]) >= end
        assert path["weeks_to_goal"] >= 0
