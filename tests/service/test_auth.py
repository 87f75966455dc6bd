"""Token verification: expired, forged, alg none, wrong audience and bad claims are rejected; CLI mints tokens."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from typer.testing import CliRunner

from service.auth import AuthError, mint_token, verify_token
from service.settings import Settings, UnsafeSettingsError

SECRET = "unit-test-secret-0123456789-abcdefghijklmnop"


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret=SECRET)  # type: ignore[arg-type]


def _claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "u1", "role": "counsellor", "centre": "helsinki", "aud": "polku", "exp": now + 60, **over}


def test_minted_token_verifies(settings: Settings) -> None:
    p = verify_token(settings, mint_token(settings, role="coordinator", centre="espoo", subject="s1"))
    assert (p.subject, p.role, p.centre) == ("s1", "coordinator", "espoo")


@pytest.mark.parametrize(
    "token_of",
    [
        pytest.param(lambda: jwt.encode(_claims(exp=int(time.time()) - 120), SECRET, algorithm="HS256"), id="expired"),
        pytest.param(
            lambda: jwt.encode(_claims(), "another-secret-0123456789-abcdefghijkl", algorithm="HS256"), id="forged"
        ),
        pytest.param(lambda: jwt.encode(_claims(aud="other"), SECRET, algorithm="HS256"), id="wrong-audience"),
        pytest.param(lambda: jwt.encode(_claims(role="root"), SECRET, algorithm="HS256"), id="unknown-role"),
        pytest.param(lambda: jwt.encode(_claims(centre="oulu"), SECRET, algorithm="HS256"), id="unknown-centre"),
        pytest.param(
            lambda: jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET, algorithm="HS256"),
            id="no-exp",
        ),
        pytest.param(
            lambda: jwt.encode({k: v for k, v in _claims().items() if k != "centre"}, SECRET, algorithm="HS256"),
            id="counsellor-without-centre",
        ),
        pytest.param(lambda: jwt.encode(_claims(), SECRET, algorithm="HS512"), id="hs512"),
        pytest.param(lambda: "not.a.token", id="garbage"),
    ],
)
def test_bad_tokens_rejected(settings: Settings, token_of: object) -> None:
    with pytest.raises(AuthError):
        verify_token(settings, token_of())  # type: ignore[operator]


def test_alg_none_rejected(settings: Settings) -> None:
    def b64(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}."
    with pytest.raises(AuthError):
        verify_token(settings, token)


def test_mint_refuses_bad_arguments(settings: Settings) -> None:
    with pytest.raises(ValueError, match="role"):
        mint_token(settings, role="root", centre="helsinki")
    with pytest.raises(ValueError, match="centre"):
        mint_token(settings, role="counsellor", centre="oulu")
    with pytest.raises(ValueError, match="needs a centre"):
        mint_token(settings, role="coordinator", centre=None)


def test_prod_requires_a_secret_and_dev_persists_one(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("POLKU_JWT_SECRET", raising=False)
    with pytest.raises(UnsafeSettingsError):
        Settings(env="prod", data_dir=tmp_path).jwt_key()
    dev = Settings(env="dev", data_dir=tmp_path)
    key = dev.jwt_key()
    assert len(key) >= 32
    assert (tmp_path / "jwt-secret").read_text().strip() == key
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="at least"):
        Settings(jwt_secret="short")  # type: ignore[arg-type]


def test_token_cli_prints_a_verifiable_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli import app

    monkeypatch.setenv("POLKU_JWT_SECRET", SECRET)
    result = CliRunner().invoke(app, ["token", "--role", "counsellor", "--centre", "vantaa", "--ttl", "60"])
    assert result.exit_code == 0, result.output
    p = verify_token(Settings(), result.output.strip())
    assert (p.role, p.centre) == ("counsellor", "vantaa")
    bad = CliRunner().invoke(app, ["token", "--role", "wizard", "--centre", "vantaa"])
    assert bad.exit_code != 0
