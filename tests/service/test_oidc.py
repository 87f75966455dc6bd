"""Identity-provider tokens (OIDC): a local issuer serves discovery and a JWKS over HTTP on loopback.

Covered: end to end with RS256 and ES256, roles as a list or a string, key rotation without a restart, one
rate-limited refetch for unknown key ids, the JWKS endpoint going down (cached keys keep working, readiness
says so), and hostile tokens (wrong issuer or audience, expired, not yet valid, unknown kid, forged, ``alg:
none``, HS256 MACed with the provider's public key, algorithms other than RS256/ES256, an embedded key) on every
route. An OIDC-only production app refuses HS256 tokens, and production refuses to start with neither.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import ValidationError

from models.package import PolkuModel
from service.app import create_app
from service.auth import TokenVerifier
from service.model_holder import ModelHolder
from service.oidc import JwksKeys
from service.settings import Settings, UnsafeSettingsError
from service.storage import repositories as repo
from tests.oidc_provider import LocalIdentityProvider, SigningKey, claims, hs256_with, unsigned
from tests.service_fixtures import ApiEnv, make_settings, registry_from, seed_store, tiny_catalogue, tiny_clients

AUDIENCE = "api://polku-test"
OPEN_ROUTES = {"/healthz", "/readyz"}
REF = "2025-09-01"


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {
        "rsa1": SigningKey.rsa("rsa-2025-01"),
        "rsa2": SigningKey.rsa("rsa-2025-02"),
        "ec1": SigningKey.ec("ec-2025-01"),
        "attacker": SigningKey.rsa("rsa-2025-01"),  # same kid as the real key, different key
    }


@pytest.fixture(scope="module")
def idp(keys: dict[str, SigningKey]) -> Iterator[LocalIdentityProvider]:
    provider = LocalIdentityProvider(published=[keys["rsa1"], keys["ec1"]]).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def oidc_api(
    idp: LocalIdentityProvider, small_model: PolkuModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiEnv]:
    """The real app accepting the local provider's tokens (discovery; Keycloak-style claim names) and HS256."""
    data = tmp_path_factory.mktemp("oidc")
    settings = make_settings(
        f"sqlite:///{data / 'polku.db'}",
        data,
        oidc_issuer=idp.issuer,
        oidc_audience=AUDIENCE,
        oidc_role_claim="realm_access.roles",
        oidc_centre_claim="polku_centre",
    )
    holder = ModelHolder(settings, registry_loader=registry_from({"model": small_model, "version": "1"}))
    with TestClient(create_app(settings, model_holder=holder)) as client:
        env = ApiEnv(client, settings, holder, {})
        seed_store(env)
        yield env


@pytest.fixture(autouse=True)
def fresh_provider(idp: LocalIdentityProvider, keys: dict[str, SigningKey]) -> Iterator[None]:
    """Each test starts with the provider up and publishing ``rsa1`` and ``ec1``."""
    idp.published = [keys["rsa1"], keys["ec1"]]
    idp.down = False
    yield
    idp.down = False


def _install_keys(api: ApiEnv, idp: LocalIdentityProvider, *, cache_s: float = 3600, refetch_s: float = 30) -> JwksKeys:
    """A fresh key cache on the running app (as after a restart), loaded once."""
    keyset = JwksKeys(issuer=idp.issuer, jwks_url=None, cache_s=cache_s, refetch_s=refetch_s)
    keyset.refresh()
    verifier: TokenVerifier = api.client.app.state.token_verifier  # type: ignore[attr-defined]
    verifier.keys = keyset
    return keyset


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _suggest(api: ApiEnv, token: str) -> int:
    body = {"client_id": "hel-c-000", "k": 2, "reference_date": REF}
    return api.client.post("/v1/suggestions", json=body, headers=_bearer(token)).status_code


# ------------------------------------------------------------------------------------------------ end to end
def test_identity_provider_tokens_work_end_to_end(
    oidc_api: ApiEnv, idp: LocalIdentityProvider, keys: dict[str, SigningKey]
) -> None:
    _install_keys(oidc_api, idp)
    counsellor = keys["rsa1"].sign(claims(idp.issuer, AUDIENCE, sub="counsellor-oidc-1"))
    r = oidc_api.client.post(
        "/v1/suggestions", json={"client_id": "hel-c-000", "reference_date": REF}, headers=_bearer(counsellor)
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"]["name"] == "polku-ranker"
    with oidc_api.client.app.state.session_factory() as s:  # type: ignore[attr-defined]
        rows = repo.audit_rows(s, "hel-c-000")
    assert ("counsellor-oidc-1", "counsellor", "helsinki") in {(a.actor, a.role, a.centre) for a in rows}

    coordinator = keys["ec1"].sign(  # ES256, role as a string, centre as a one-element list
        claims(idp.issuer, AUDIENCE, realm_access={"roles": "coordinator"}, polku_centre=["helsinki"])
    )
    r = oidc_api.client.post(
        "/v1/opportunities/hel-vac-000/candidates", json={"reference_date": REF}, headers=_bearer(coordinator)
    )
    assert r.status_code == 200, r.text
    assert r.json()["count"] > 0

    both = keys["rsa1"].sign(claims(idp.issuer, AUDIENCE, realm_access={"roles": ["coordinator", "counsellor"]}))
    assert _suggest(oidc_api, both) == 200
    url = "/v1/opportunities/hel-vac-000/candidates"
    assert oidc_api.client.post(url, json={}, headers=_bearer(both)).status_code == 200
    # a role outside Polku's does not open anything
    other = keys["rsa1"].sign(claims(idp.issuer, AUDIENCE, realm_access={"roles": ["offline_access"]}))
    assert _suggest(oidc_api, other) == 401
    # the local HS256 tokens still work next to the provider's (development, `make run`)
    assert _suggest(oidc_api, oidc_api.token("counsellor")) == 200

    ready = oidc_api.client.get("/readyz").json()
    assert ready["status"] == "ok"
    assert ready["identity_provider"]["status"] == "ok"
    assert ready["identity_provider"]["keys"] == 2


# ------------------------------------------------------------------------------------------------- rotation
def test_key_rotation_is_picked_up_without_a_restart(
    oidc_api: ApiEnv, idp: LocalIdentityProvider, keys: dict[str, SigningKey]
) -> None:
    keyset = _install_keys(oidc_api, idp, refetch_s=0.2)
    old, new = keys["rsa1"], keys["rsa2"]
    assert _suggest(oidc_api, old.sign(claims(idp.issuer, AUDIENCE))) == 200

    idp.published = [old, new, keys["ec1"]]  # the provider publishes the next key before signing with it
    before = idp.jwks_fetches
    assert _suggest(oidc_api, new.sign(claims(idp.issuer, AUDIENCE))) == 200
    assert idp.jwks_fetches == before + 1, "the unknown kid triggered one refetch"
    assert _suggest(oidc_api, new.sign(claims(idp.issuer, AUDIENCE))) == 200
    assert idp.jwks_fetches == before + 1, "known keys are served from the cache"

    idp.published = [new, keys["ec1"]]  # the old key is retired
    time.sleep(0.25)
    ghost = keys["attacker"].sign(claims(idp.issuer, AUDIENCE), kid="retired-probe")
    assert _suggest(oidc_api, ghost) == 401  # an unknown kid refreshes the set ...
    assert _suggest(oidc_api, old.sign(claims(idp.issuer, AUDIENCE))) == 401  # ... and the retired key is gone
    assert "rsa-2025-01" not in keyset._keys  # noqa: SLF001


def test_unknown_kid_triggers_one_rate_limited_refetch(
    oidc_api: ApiEnv, idp: LocalIdentityProvider, keys: dict[str, SigningKey]
) -> None:
    _install_keys(oidc_api, idp, refetch_s=30)
    before = idp.jwks_fetches
    for i in range(5):
        token = keys["attacker"].sign(claims(idp.issuer, AUDIENCE), kid=f"made-up-{i}")
        assert _suggest(oidc_api, token) == 401
    assert idp.jwks_fetches == before + 1, "five made-up key ids, one fetch"


# ---------------------------------------------------------------------------------------------- endpoint down
def test_jwks_endpoint_down_cached_keys_keep_working_and_readiness_says_so(
    oidc_api: ApiEnv, idp: LocalIdentityProvider, keys: dict[str, SigningKey]
) -> None:
    _install_keys(oidc_api, idp, cache_s=1, refetch_s=0.2)
    idp.down = True
    time.sleep(1.1)  # the cached set is now due for a refresh, which fails
    token = keys["rsa1"].sign(claims(idp.issuer, AUDIENCE))
    ready: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert _suggest(oidc_api, token) == 200, "cached keys keep verifying tokens"
        r = oidc_api.client.get("/readyz")
        ready = r.json()
        if ready["identity_provider"]["status"] == "unreachable":
            assert r.status_code == 200
            break
        time.sleep(0.1)
    assert ready["status"] == "degraded", ready
    assert ready["identity_provider"] == {
        "status": "unreachable",
        "keys": 2,
        "fetched_at": ready["identity_provider"]["fetched_at"],
    }
    assert "identity provider keys unreachable: 2 cached keys in use" in ready["reason"]
    assert _suggest(oidc_api, keys["rsa2"].sign(claims(idp.issuer, AUDIENCE))) == 401  # a new key cannot be had

    idp.down = False  # recovery needs no restart
    deadline = time.monotonic() + 10
    while oidc_api.client.get("/readyz").json()["status"] != "ok":
        assert time.monotonic() < deadline, "readiness recovers"
        time.sleep(0.1)


# ----------------------------------------------------------------------------------------- hostile, every route
def _hostile(idp: LocalIdentityProvider, keys: dict[str, SigningKey]) -> dict[str, str]:
    iss, real = idp.issuer, keys["rsa1"]
    now = int(time.time())
    good = claims(iss, AUDIENCE, realm_access={"roles": ["admin", "counsellor"]})
    embedded = keys["attacker"].public_jwk()
    return {
        "wrong-issuer": real.sign({**good, "iss": "https://evil.example"}),
        "issuer-with-slash": real.sign({**good, "iss": iss + "/"}),
        "wrong-audience": real.sign({**good, "aud": "api://someone-else"}),
        "no-audience": real.sign({k: v for k, v in good.items() if k != "aud"}),
        "expired": real.sign({**good, "exp": now - 120, "iat": now - 3600}),
        "not-yet-valid": real.sign({**good, "nbf": now + 600, "exp": now + 1200}),
        "no-exp": real.sign({k: v for k, v in good.items() if k != "exp"}),
        "unknown-kid": keys["attacker"].sign(good, kid="never-published"),
        "forged-with-real-kid": keys["attacker"].sign(good),
        "embedded-jwk": keys["attacker"].sign(good, jwk=embedded),
        "alg-none": unsigned(good, kid=real.kid),
        "key-confusion-hs256-public-pem": hs256_with(real.public_pem(), good, kid=real.kid),
        "key-confusion-hs256-ec-pem": hs256_with(keys["ec1"].public_pem(), good, kid=keys["ec1"].kid),
        "rs512-real-key": real.sign(good, alg="RS512"),
        "ps256-real-key": real.sign(good, alg="PS256"),
        "rs256-header-on-ec-key": keys["ec1"].sign(good, alg="ES256", kid=real.kid),
        "no-kid": jwt.encode(good, real.private, algorithm="RS256"),
        "no-polku-role": real.sign({**good, "realm_access": {"roles": ["offline_access"]}}),
        "unknown-centre": real.sign({**good, "polku_centre": "oulu"}),
    }


def test_hostile_tokens_are_refused_on_every_route(
    oidc_api: ApiEnv, idp: LocalIdentityProvider, keys: dict[str, SigningKey]
) -> None:
    _install_keys(oidc_api, idp, refetch_s=30)
    hostile = _hostile(idp, keys)
    routes = [r for r in oidc_api.client.app.routes if isinstance(r, APIRoute)]  # type: ignore[attr-defined]
    assert len(routes) >= 15
    before = idp.jwks_fetches
    checked = 0
    for route in routes:
        path = route.path.replace("{client_id}", "hel-c-000").replace("{opportunity_id}", "hel-vac-000")
        for method in sorted(route.methods or ()):
            if route.path in OPEN_ROUTES:
                continue
            for name, token in hostile.items():
                r = oidc_api.client.request(method, path, json={}, headers=_bearer(token))
                assert r.status_code == 401, (name, method, path, r.status_code, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
                checked += 1
    assert checked >= 14 * len(hostile)
    assert idp.jwks_fetches <= before + 1, "made-up key ids on every route cost one fetch at most"
    # the provider's real key still works afterwards: nothing was poisoned
    assert _suggest(oidc_api, keys["rsa1"].sign(claims(idp.issuer, AUDIENCE))) == 200


# ------------------------------------------------------------------------------------------- production setup
def test_production_with_only_an_identity_provider_refuses_hs256_and_reports_missing_keys(
    idp: LocalIdentityProvider, keys: dict[str, SigningKey], small_model: PolkuModel, tmp_path: Path
) -> None:
    idp.down = True  # the provider is down while the service starts
    settings = make_settings(
        f"sqlite:///{tmp_path / 'polku.db'}",
        tmp_path,
        env="prod",
        jwt_secret=None,
        oidc_issuer=idp.issuer,
        oidc_audience=AUDIENCE,
        oidc_role_claim="realm_access.roles",
        oidc_centre_claim="polku_centre",
        oidc_jwks_refetch_s=0.2,
    )
    holder = ModelHolder(settings, registry_loader=registry_from({"model": small_model, "version": "1"}))
    with TestClient(create_app(settings, model_holder=holder)) as client:
        with client.app.state.session_factory() as s:  # type: ignore[attr-defined]
            repo.upsert_opportunities(s, tiny_catalogue())
            repo.upsert_clients(s, tiny_clients())
            s.commit()
        r = client.get("/readyz")
        assert r.status_code == 503
        assert "no token can be verified" in r.json()["reason"]

        local = jwt.encode(
            {"sub": "x", "role": "admin", "aud": "polku", "exp": int(time.time()) + 60},
            "test-secret-that-is-long-enough-for-hs256-0123456789",
            algorithm="HS256",
        )
        assert client.get("/v1/model", headers=_bearer(local)).status_code == 401  # no local tokens in prod

        idp.down = False
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the keys are fetched once the provider is back"
            time.sleep(0.1)
        token = keys["rsa1"].sign(claims(idp.issuer, AUDIENCE))
        body = {"client_id": "hel-c-000", "reference_date": REF}
        assert client.post("/v1/suggestions", json=body, headers=_bearer(token)).status_code == 200


def test_production_refuses_to_start_with_neither_identity_provider_nor_secret(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'polku.db'}", tmp_path, env="prod", jwt_secret=None)
    with pytest.raises(UnsafeSettingsError, match="POLKU_OIDC_ISSUER"):
        create_app(settings)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"oidc_issuer": "https://idp.example"}, "POLKU_OIDC_AUDIENCE"),
        ({"oidc_audience": "polku"}, "POLKU_OIDC_ISSUER"),
        ({"oidc_issuer": "http://idp.example", "oidc_audience": "a", "env": "prod"}, "POLKU_OIDC_ISSUER"),
        (
            {"oidc_issuer": "https://idp.example", "oidc_audience": "a", "oidc_jwks_url": "file:///etc/passwd"},
            "POLKU_OIDC_JWKS_URL",
        ),
    ],
)
def test_inconsistent_oidc_settings_name_the_variable(values: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**values)  # type: ignore[arg-type]


def test_default_claim_names_read_entra_style_tokens(idp: LocalIdentityProvider, keys: dict[str, SigningKey]) -> None:
    settings = Settings(oidc_issuer=idp.issuer, oidc_audience=AUDIENCE)  # type: ignore[arg-type]
    verifier = TokenVerifier(settings)
    now = int(time.time())
    token = keys["ec1"].sign(
        {"iss": idp.issuer, "aud": AUDIENCE, "sub": "oid-1", "exp": now + 60, "roles": ["admin"], "centre": "vantaa"}
    )
    principal = verifier.verify(token)
    assert (principal.subject, principal.role, principal.centre) == ("oid-1", "admin", "vantaa")
    skewed = keys["ec1"].sign(
        {"iss": idp.issuer, "aud": AUDIENCE, "sub": "oid-1", "exp": now - 10, "roles": "counsellor", "centre": "espoo"}
    )
    assert verifier.verify(skewed).role == "counsellor", "within the default 30 s leeway"
