"""Security: tokens on every route, hostile tokens, centres, consent (property test), limits, CORS, headers, logs.

Runs on SQLite and PostgreSQL (the ``api`` fixture). Every test here captures the logs of all loggers at DEBUG
(and uvicorn's access log) and fails if any value of a stored profile or audit record shows up in them.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.records import ClientProfile
from service.settings import Settings
from tests.factories import make_audit, make_client
from tests.service_fixtures import ApiEnv, tiny_audit, tiny_clients

OPEN_ROUTES = {"/healthz", "/readyz"}
REF = "2025-09-01"
AUDIT_WORDS = ("gender", "mother_tongue", "country_of_origin")


# ---------------------------------------------------------------------------------------------- log guard
def _profile_values(profile: ClientProfile) -> set[str]:
    """Distinctive values of a profile: free text, codes and URIs (short or generic tokens are left out)."""
    values: set[str] = {profile.client_id}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)
        elif isinstance(node, str) and (node.startswith("http") or len(node) >= 8):
            values.add(node)

    walk(profile.model_dump(mode="json"))
    return values


SENSITIVE: set[str] = set()
for _c in tiny_clients():
    SENSITIVE |= _profile_values(_c)


@pytest.fixture(autouse=True)
def no_personal_data_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Capture every logger at DEBUG (uvicorn access included) and fail on any profile or audit value."""
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "service", "service.access"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    # httpx is the test's own client (it logs the URLs it requests); everything else is the service side
    records = [r for r in (*caplog.get_records("setup"), *caplog.get_records("call")) if r.name != "httpx"]
    assert records, "logs were captured"
    text = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in records)
    leaked = sorted(v for v in SENSITIVE if v in text)
    where = sorted({r.getMessage()[:150] for r in records if any(v in f"{r.getMessage()} {r.args!r}" for v in leaked)})
    assert not leaked, f"profile values in logs of {where}: {leaked[:5]}"


# -------------------------------------------------------------------------------------------------- tokens
def _concrete(path: str) -> str:
    return path.replace("{client_id}", "hel-c-000").replace("{opportunity_id}", "hel-vac-000")


def _claims(settings: Settings, **over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "attacker",
        "role": "admin",
        "centre": "helsinki",
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 600,
    }
    return {**base, **over}


def _alg_none(claims: dict[str, object]) -> str:
    def seg(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'none', 'typ': 'JWT'})}.{seg(claims)}."


def _hostile_tokens(settings: Settings) -> dict[str, str]:
    key = settings.jwt_key()
    now = int(time.time())
    return {
        "expired": jwt.encode(_claims(settings, exp=now - 60, iat=now - 3600), key, algorithm="HS256"),
        "forged": jwt.encode(_claims(settings), "x" * 48, algorithm="HS256"),
        "alg-none": _alg_none(_claims(settings)),
        "alg-none-upper": _alg_none(_claims(settings)).replace("bm9uZ", "Tk9OR"),
        "wrong-audience": jwt.encode(_claims(settings, aud="someone-else"), key, algorithm="HS256"),
        "no-audience": jwt.encode({k: v for k, v in _claims(settings).items() if k != "aud"}, key, algorithm="HS256"),
        "hs512-same-key": jwt.encode(_claims(settings), key, algorithm="HS512"),
        "unknown-role": jwt.encode(_claims(settings, role="root"), key, algorithm="HS256"),
        "empty": "",
    }


def _api_routes(api: ApiEnv) -> list[APIRoute]:
    routes = [r for r in api.client.app.routes if isinstance(r, APIRoute)]  # type: ignore[attr-defined]
    assert len(routes) >= 15, "routes must be registered flat so this enumeration sees them all"
    return routes


def test_every_route_but_health_rejects_missing_and_hostile_tokens(api: ApiEnv) -> None:
    hostile = _hostile_tokens(api.settings)
    checked = 0
    for route in _api_routes(api):
        path = _concrete(route.path)
        for method in sorted(route.methods or ()):
            if route.path in OPEN_ROUTES:
                assert api.client.request(method, path).status_code == 200
                continue
            checked += 1
            assert api.client.request(method, path, json={}).status_code == 401, (method, path)
            for name, token in hostile.items():
                r = api.client.request(method, path, json={}, headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 401, (name, method, path, r.status_code)
                assert r.headers.get("www-authenticate", "").startswith("Bearer")
            r = api.client.request(method, path, json={}, headers={"Authorization": f"Basic {hostile['forged']}"})
            assert r.status_code == 401
    assert checked >= 14


def test_cross_centre_access_is_denied(api: ApiEnv) -> None:
    espoo_counsellor = api.auth("counsellor", "espoo")
    espoo_coordinator = api.auth("coordinator", "espoo")
    assert api.client.get("/v1/clients/hel-c-000", headers=espoo_counsellor).status_code == 403
    assert api.client.delete("/v1/clients/hel-c-000", headers=espoo_counsellor).status_code == 403
    body = {"client_id": "hel-c-000", "reference_date": REF}
    assert api.client.post("/v1/suggestions", json=body, headers=espoo_counsellor).status_code == 403
    url = "/v1/opportunities/hel-vac-000/candidates"
    assert api.client.post(url, json={}, headers=espoo_coordinator).status_code == 403
    assert api.client.delete("/v1/opportunities/hel-vac-000", headers=espoo_coordinator).status_code == 403
    # an inline profile of another centre cannot be scored either
    inline = make_client(centre="helsinki").model_dump(mode="json")
    r = api.client.post("/v1/suggestions", json={"client": inline, "reference_date": REF}, headers=espoo_counsellor)
    assert r.status_code == 403
    # the records are intact
    assert api.client.get("/v1/clients/hel-c-000", headers=api.auth("counsellor")).status_code == 200


# ------------------------------------------------------------------------------------ consent property test
_consents = st.fixed_dictionaries(
    {"matching": st.booleans(), "share_with_coordinators": st.booleans(), "model_training": st.booleans()}
)
_store = st.lists(
    st.tuples(st.sampled_from(["helsinki", "espoo"]), _consents, st.sampled_from(["female", "male", "other"])),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(store=_store, k=st.integers(1, 200))
def test_coordinators_never_receive_non_consenting_clients_or_audit_attributes(
    api: ApiEnv, store: list[tuple[str, dict[str, bool], str]], k: int
) -> None:
    batch = uuid.uuid4().hex[:6]
    consenting: set[str] = set()
    mine: dict[str, str] = {}
    for i, (centre, consent, gender) in enumerate(store):
        cid = f"prop-{batch}-{i}"
        municipality = "091" if centre == "helsinki" else "049"
        profile = make_client(client_id=cid, centre=centre, consent=consent, constraints={"municipality": municipality})
        audit = make_audit(cid, gender=gender, mother_tongue="so", country_of_origin="706")
        body = {"profile": profile.model_dump(mode="json"), "audit": audit.model_dump(mode="json")}
        assert api.client.put(f"/v1/clients/{cid}", json=body, headers=api.auth("counsellor", centre)).status_code in (
            200,
            201,
        )
        mine[cid] = centre
        if centre == "helsinki" and consent["matching"] and consent["share_with_coordinators"]:
            consenting.add(cid)
    allowed = consenting | {
        c.client_id
        for c in tiny_clients()
        if c.centre == "helsinki" and c.consent.matching and c.consent.share_with_coordinators
    }
    r = api.client.post(
        "/v1/opportunities/hel-vac-000/candidates",
        json={"k": k, "reference_date": REF},
        headers=api.auth("coordinator"),
    )
    assert r.status_code == 200, r.text
    returned = {c["client_id"] for c in r.json()["data"]}
    assert returned <= allowed, returned - allowed
    assert len(r.json()["data"]) <= k
    for word in AUDIT_WORDS:
        assert word not in r.text
    assert '"706"' not in r.text
    assert '"so"' not in r.text
    for cid, centre in mine.items():  # keep the shared store small for the other tests
        assert api.client.delete(f"/v1/clients/{cid}", headers=api.auth("counsellor", centre)).status_code == 200


def test_client_reads_never_return_audit_attributes(api: ApiEnv) -> None:
    for client, _audit in zip(tiny_clients(), tiny_audit(tiny_clients()), strict=True):
        r = api.client.get(f"/v1/clients/{client.client_id}", headers=api.auth("counsellor", client.centre))
        assert r.status_code == 200
        assert not any(word in r.text for word in AUDIT_WORDS)


# ---------------------------------------------------------------------------------- limits, CORS, headers
@pytest.mark.parametrize("path", ["/v1/suggestions", "/v1/feedback", "/v1/clients/hel-c-000"])
def test_oversized_bodies_get_413_before_auth_or_parsing(api: ApiEnv, path: str) -> None:
    method = "PUT" if path.startswith("/v1/clients") else "POST"
    big = b'{"pad": "' + b"x" * (api.settings.max_body_bytes + 1) + b'"}'
    r = api.client.request(method, path, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["errors"][0]["field"] == "body"
    r = api.client.request(method, path, content=b"{}", headers={**api.auth("counsellor"), "content-length": "abc"})
    assert r.status_code in (400, 413, 422)


def test_cors_is_closed_by_default_and_security_headers_are_everywhere(api: ApiEnv) -> None:
    assert api.settings.cors_origins == []
    evil = {"Origin": "https://evil.example"}
    for method, path, headers in [
        ("GET", "/healthz", evil),
        ("GET", "/v1/model", {**evil, **api.auth("data_scientist", None)}),
        ("POST", "/v1/suggestions", evil),  # 401
        ("GET", "/nope", evil),  # 404
        ("OPTIONS", "/v1/suggestions", {**evil, "Access-Control-Request-Method": "POST"}),
    ]:
        r = api.client.request(method, path, headers=headers)
        assert not any(h.startswith("access-control-") for h in r.headers), (method, path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "server" not in r.headers or "uvicorn" not in r.headers["server"].lower()


def test_errors_do_not_echo_or_log_profile_values(api: ApiEnv) -> None:
    client = tiny_clients()[0].model_dump(mode="json")
    client["age"] = 5  # invalid, the rest is a real stored profile
    client["skills"][0]["uri"] = client["skills"][0]["uri"] + "-tampered"
    r = api.client.post(
        "/v1/suggestions", json={"client": client, "reference_date": REF}, headers=api.auth("counsellor")
    )
    assert r.status_code == 422
    assert client["skills"][0]["uri"] not in r.text
    assert '"input"' not in r.text
    SENSITIVE.add(client["skills"][0]["uri"])


def test_api_traffic_with_personal_data_is_not_logged(api: ApiEnv) -> None:
    """Every personal-data route once (the autouse guard then checks the captured logs)."""
    h = api.auth("counsellor")
    assert api.client.get("/v1/clients/hel-c-000", headers=h).status_code == 200
    profile = tiny_clients()[3]
    body = {"profile": profile.model_dump(mode="json")}
    assert api.client.put(f"/v1/clients/{profile.client_id}", json=body, headers=h).status_code == 200
    r = api.client.post(
        "/v1/suggestions",
        json={"client": profile.model_dump(mode="json"), "include_paths": True, "reference_date": REF},
        headers=h,
    )
    assert r.status_code == 200
    r = api.client.post("/v1/opportunities/hel-vac-000/candidates", json={}, headers=api.auth("coordinator"))
    assert r.status_code == 200


def test_real_server_access_log_holds_no_client_ids(api: ApiEnv, caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn configured as ``polku serve`` configures it: its access log must not carry ids from URLs."""
    import threading

    import httpx
    import uvicorn

    from benchmarks.loadtest import free_port
    from service.cli import uvicorn_config

    port = free_port()
    config = uvicorn_config(api.client.app, api.settings, "127.0.0.1", port, "debug")  # type: ignore[arg-type]
    config.lifespan = "off"  # the app's lifespan already ran in the fixture
    uvicorn_loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access", "uvicorn.error")]
    # uvicorn's loggers do not propagate to the root, where caplog listens: listen on those uvicorn emits to
    # (it writes access lines only when "uvicorn.access" has handlers, so that one is joined only if it does)
    uvicorn_loggers = [lg for lg in uvicorn_loggers if lg.name != "uvicorn.access" or lg.handlers]
    for lg in uvicorn_loggers:
        lg.addHandler(caplog.handler)
        lg.setLevel(logging.DEBUG)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/clients/hel-c-000", headers=api.auth("counsellor"), timeout=10)
        assert r.status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)
        for lg in uvicorn_loggers:
            lg.removeHandler(caplog.handler)
    assert any(rec.name.startswith("uvicorn") for rec in caplog.records), "uvicorn logs were captured"
