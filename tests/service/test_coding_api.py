"""Occupation coding through the real app on SQLite and PostgreSQL: POST /v1/coding:suggest, PUT drafts, polku code."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from service.storage import repositories as repo
from service.storage.tables import AuditLogRow, OpportunityRow
from tests.factories import make_opportunity
from tests.service_fixtures import ApiEnv

HEALTHCARE_ASSISTANT = "http://data.europa.eu/esco/occupation/d38c2107-98f2-47b7-8bb4-f69750d51082"
NOTE = "Asiakas Zyxwv on työskennellyt sairaanhoitajana Mogadishussa kymmenen vuotta"


def _counts(api: ApiEnv) -> tuple[int, int]:
    with api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        audit = s.scalar(select(func.count()).select_from(AuditLogRow)) or 0
        opps = s.scalar(select(func.count()).select_from(OpportunityRow)) or 0
    return int(audit), int(opps)


def _suggest(api: ApiEnv, body: dict[str, object], role: str = "coordinator"):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/coding:suggest", json=body, headers=api.auth(role))


# ------------------------------------------------------------------------------------------ coding:suggest
@pytest.mark.parametrize("text", ["lähihoitaja, kotihoitoon", "lähihoitajaksi", "lähihoitajille", "lähihoitajan"])
def test_suggest_ranks_occupations_with_isco_codes_and_skills(api: ApiEnv, text: str) -> None:
    r = _suggest(api, {"text": text, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == "fi"
    assert body["coverage"] == "full"
    top = body["occupations"][0]
    assert top == {**top, "rank": 1, "esco_uri": HEALTHCARE_ASSISTANT, "isco": "5321", "label_fi": "lähihoitaja"}
    assert len(body["occupations"]) == 3
    skills = body["top_occupation_skills"]
    assert skills["esco_uri"] == HEALTHCARE_ASSISTANT
    assert skills["essential"]
    assert skills["optional"]
    assert all(s["uri"].startswith("http://data.europa.eu/esco/skill/") for s in skills["essential"])
    assert body["taxonomy_version"]
    assert body["coder_version"]


def test_suggest_english_and_swedish(api: ApiEnv) -> None:
    en = _suggest(api, {"text": "Registered nurse, elderly care"}).json()
    assert en["language"] == "en"
    assert any(o["isco"] == "2221" for o in en["occupations"])
    sv = _suggest(api, {"text": "barnskötare inom småbarnspedagogik"}).json()
    assert sv["language"] == "sv"
    assert sv["coverage"] == "limited"
    assert any("Swedish" in n for n in sv["notes"])
    assert sv["occupations"][0]["isco"].startswith("53")


def test_suggest_names_skills_with_the_matched_words(api: ApiEnv) -> None:
    body = _suggest(api, {"text": "Kokki, puhuu englantia ja arabiaa", "lang": "fi"}).json()
    named = {s["matched_label"].lower(): s["words"] for s in body["skills_in_text"]}
    assert named.get("englanti") == ["englantia"]


def test_counsellor_note_is_audited_but_never_stored_or_logged(api: ApiEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    audit_before, opps_before = _counts(api)
    r = _suggest(api, {"text": NOTE}, role="counsellor")
    assert r.status_code == 200, r.text
    assert r.json()["occupations"][0]["isco"] == "2221"
    audit_after, opps_after = _counts(api)
    assert (audit_after, opps_after) == (audit_before + 1, opps_before)
    with api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        last = repo.audit_rows(s)[-1]
        assert (last.role, last.purpose, last.client_id, last.centre) == (
            "counsellor",
            "coding_suggest",
            None,
            "helsinki",
        )
        dumped = json.dumps([[str(getattr(row, c.name)) for c in row.__table__.columns] for row in repo.audit_rows(s)])
    assert "Zyxwv" not in dumped
    logged = "\n".join(f"{rec.getMessage()} {rec.args!r}" for rec in caplog.records if rec.name != "httpx")
    assert "Zyxwv" not in logged
    assert "Mogadishu" not in logged


@pytest.mark.parametrize(
    ("role", "centre", "status"),
    [
        ("coordinator", "helsinki", 200),
        ("counsellor", "espoo", 200),
        ("admin", None, 200),
        ("data_scientist", None, 403),
    ],
)
def test_suggest_roles(api: ApiEnv, role: str, centre: str | None, status: int) -> None:
    r = api.client.post("/v1/coding:suggest", json={"text": "kokki"}, headers=api.auth(role, centre))
    assert r.status_code == status, r.text


def test_suggest_needs_a_token(api: ApiEnv) -> None:
    assert api.client.post("/v1/coding:suggest", json={"text": "kokki"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "body.text"),
        ({"text": "   \n\t"}, "body.text"),
        ({"text": "kokki\u0000"}, "body.text"),
        ({"text": "kokki\u001b[0m"}, "body.text"),
        ({"text": "<img src=x onerror=alert(1)> kokki"}, "body.text"),
        ({"text": "'; DROP TABLE opportunities; --"}, "body.text"),
        ({"text": "SELECT password FROM users"}, "body.text"),
        ({"text": "kokki " * 1000}, "body.text"),
        ({"text": "?!%&/()"}, "body.text"),
        ({}, "body.text"),
        ({"text": 42}, "body.text"),
        ({"text": "kokki", "lang": "de"}, "body.lang"),
        ({"text": "kokki", "k": 0}, "body.k"),
        ({"text": "kokki", "k": 21}, "body.k"),
        ({"text": "kokki", "store": True}, "body.store"),
    ],
)
def test_bad_or_hostile_text_is_a_clear_422_and_nothing_is_stored(
    api: ApiEnv, body: dict[str, object], field: str
) -> None:
    before = _counts(api)
    r = _suggest(api, body, role="counsellor")
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["field"] == field for e in errors), errors
    text = body.get("text")
    if isinstance(text, str) and len(text.strip()) > 3:
        assert text.strip()[:10] not in r.text
    assert _counts(api) == before


# ------------------------------------------------------------------------------- PUT opportunities (drafts)
def _draft(opportunity_id: str, **extra: object) -> dict[str, object]:
    record = make_opportunity(opportunity_id=opportunity_id, occupation=None).model_dump(mode="json")
    record["required_skills"] = {"essential": [], "optional": []}
    return {**record, **extra}


def test_put_draft_with_coding_proposes_codes_and_stores_nothing(api: ApiEnv) -> None:
    h = api.auth("coordinator")
    before = _counts(api)
    body = _draft("hel-draft-001", confirm=False, coding={"text": "Lähihoitaja, kotihoitoon (vakituinen)"})
    r = api.client.put("/v1/opportunities/hel-draft-001", json=body, headers=h)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["stored"] is False
    proposed = answer["opportunity"]
    assert proposed["occupation"] == {"esco_uri": HEALTHCARE_ASSISTANT, "isco": "5321"}
    assert proposed["required_skills"]["essential"]
    assert answer["coding"]["occupations"][0]["esco_uri"] == HEALTHCARE_ASSISTANT
    assert _counts(api) == before
    assert api.client.get("/v1/opportunities/hel-draft-001", headers=h).status_code == 404

    # The coordinator confirms: the proposed record, with its explicit codes, is what gets stored.
    r = api.client.put("/v1/opportunities/hel-draft-001", json={**proposed, "confirm": True}, headers=h)
    assert r.status_code == 201, r.text
    stored = api.client.get("/v1/opportunities/hel-draft-001", headers=h).json()["opportunity"]
    assert stored["occupation"]["esco_uri"] == HEALTHCARE_ASSISTANT
    assert "coding" not in stored
    assert "confirm" not in stored
    assert api.client.delete("/v1/opportunities/hel-draft-001", headers=h).status_code == 200


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"coding": {"text": "kokki"}}, "body.confirm"),
        ({"coding": {"text": "kokki"}, "confirm": True}, "body.confirm"),
        ({"confirm": False}, "body.coding"),
        (
            {
                "coding": {"text": "kokki"},
                "confirm": False,
                "occupation": {"esco_uri": HEALTHCARE_ASSISTANT},
            },
            "body.coding",
        ),
        ({"coding": {"text": "<b>kokki</b>"}, "confirm": False}, "body.coding.text"),
        ({"coding": {"text": ""}, "confirm": False}, "body.coding.text"),
    ],
)
def test_put_draft_rules_name_the_field_and_store_nothing(api: ApiEnv, extra: dict[str, object], field: str) -> None:
    before = _counts(api)
    r = api.client.put(
        "/v1/opportunities/hel-draft-002", json=_draft("hel-draft-002", **extra), headers=api.auth("coordinator")
    )
    assert r.status_code == 422, r.text
    assert any(e["field"] == field for e in r.json()["errors"]), r.text
    assert _counts(api) == before


def test_put_draft_for_another_centre_is_forbidden(api: ApiEnv) -> None:
    body = _draft("esp-draft-001", confirm=False, coding={"text": "kokki"})
    body["centre"] = "espoo"
    r = api.client.put("/v1/opportunities/esp-draft-001", json=body, headers=api.auth("coordinator"))
    assert r.status_code == 403


def test_put_with_explicit_codes_still_stores(api: ApiEnv) -> None:
    h = api.auth("coordinator")
    opp = make_opportunity(opportunity_id="hel-plain-001").model_dump(mode="json")
    assert api.client.put("/v1/opportunities/hel-plain-001", json=opp, headers=h).status_code == 201
    assert (
        api.client.put("/v1/opportunities/hel-plain-001", json={**opp, "confirm": True}, headers=h).status_code == 200
    )
    assert api.client.delete("/v1/opportunities/hel-plain-001", headers=h).status_code == 200


# ------------------------------------------------------------------------------------------------- CLI
def test_polku_code_prints_the_ranked_codes() -> None:
    from polku import app

    result = CliRunner().invoke(app, ["code", "lähihoitaja, kotihoitoon", "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "ISCO 5321" in result.output
    assert "lähihoitaja" in result.output
    result = CliRunner().invoke(app, ["code", "barnskötare inom småbarnspedagogik", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["coverage"] == "limited"


def test_polku_code_refuses_hostile_text_with_a_usage_error() -> None:
    from polku import app

    result = CliRunner().invoke(app, ["code", "<script>x</script>"])
    assert result.exit_code == 2
    assert "text" in result.output
