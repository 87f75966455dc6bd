"""Settings of the HTTP process, read from ``POLKU_*`` environment variables (one object per process)."""

from __future__ import annotations

import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from features import paths
from models.exploration import policy_from_setting

logger = logging.getLogger(__name__)

_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret
_MIN_SECRET_BYTES = 32


class UnsafeSettingsError(RuntimeError):
    """A setting is unsafe for the environment (e.g. no JWT secret outside dev)."""


class Settings(BaseSettings):
    """Configuration of the Polku service.

    Attributes:
        env: ``dev`` allows a generated JWT secret persisted under the data directory; ``prod`` refuses it.
        data_dir: the data directory (``POLKU_DATA_DIR``).
        database_url: SQLAlchemy URL; SQLite file under the data directory by default.
        jwt_secret: HS256 key of locally minted tokens (``polku token``); outside dev, this or OIDC is required.
        jwt_audience: expected ``aud`` claim of HS256 tokens.
        oidc_issuer: the identity provider's issuer URL; set to accept its RS256/ES256 tokens.
        oidc_audience: expected ``aud`` of identity-provider tokens (required with ``oidc_issuer``).
        oidc_jwks_url: the provider's key set URL; default: ``jwks_uri`` of the issuer's discovery document.
        oidc_role_claim: claim holding the Polku role (a string or a list; dotted names walk nested objects).
        oidc_centre_claim: claim holding the caller's centre.
        oidc_leeway_s: clock skew allowed on ``exp``, ``nbf`` and ``iat`` of identity-provider tokens.
        oidc_jwks_cache_s: age after which the provider's keys are refreshed in the background.
        oidc_jwks_refetch_s: least seconds between key-set fetches caused by unknown key ids or failed refreshes.
        max_body_bytes: request bodies above this size get 413.
        cors_origins: allowed browser origins (comma-separated); empty = CORS closed.
        model_name: registered model name in MLflow.
        model_alias: registry alias served.
        mlflow_tracking_uri: MLflow store holding the registry.
        registry_enabled: when false the registry is not asked (local cache, then fallback).
        host: bind address of ``polku serve``.
        port: port of ``polku serve``.
        graceful_shutdown_s: seconds in-flight requests get after SIGTERM.
        keep_alive_s: seconds an idle keep-alive connection stays open; longer than clients' and proxies' idle
            timeouts, so that the client, never the server, closes an idle connection.
        max_in_flight: requests one worker admits at once; past that it answers 503 with ``Retry-After``.
        feedback_reserve: extra in-flight places only feedback may use, so that overload by rankings does not
            turn decisions away.
        overload_age_ms: new requests are turned away while the oldest request in flight has run longer.
        overload_retry_after_s: ``Retry-After`` sent with a 503 for overload.
        retention_audit_days: audit-log rows older than this are deleted by ``polku retention --apply``.
        retention_feedback_days: feedback older than this is de-identified by ``polku retention --apply``.
        retention_impressions_days: impressions (items shown by rankings) older than this are deleted by
            ``polku retention --apply``.
        exploration: serving policy: ``off`` (the best k by score) or a Plackett–Luce temperature > 0 that samples
            places 4 and below among the eligible, scored candidates (``models.exploration``).
        impression_flush_ms: the impression writer stores queued impressions this often (and at shutdown).
        db_retry_after_s: ``Retry-After`` sent with 503 when the database is unreachable.
    """

    model_config = SettingsConfigDict(env_prefix="POLKU_", extra="ignore", validate_default=True)

    env: Literal["dev", "prod"] = "dev"
    data_dir: Path = Field(default_factory=paths.data_dir)
    database_url: str = Field(default_factory=paths.database_url)
    jwt_secret: SecretStr | None = None
    jwt_audience: str = "polku"
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_role_claim: str = Field(default="roles", min_length=1, max_length=200)
    oidc_centre_claim: str = Field(default="centre", min_length=1, max_length=200)
    oidc_leeway_s: int = Field(default=30, ge=0, le=300)
    oidc_jwks_cache_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    oidc_jwks_refetch_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    model_name: str = "polku-ranker"
    model_alias: str = "champion"
    mlflow_tracking_uri: str = Field(default_factory=paths.mlflow_tracking_uri)
    registry_enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    graceful_shutdown_s: int = Field(default=10, ge=0, le=300)
    keep_alive_s: int = Field(default=75, ge=1, le=3600)
    max_in_flight: int = Field(default=4, ge=1, le=10_000)
    feedback_reserve: int = Field(default=4, ge=0, le=10_000)
    overload_age_ms: int = Field(default=60, ge=1, le=600_000)
    overload_retry_after_s: int = Field(default=1, ge=1, le=3600)
    retention_audit_days: int = Field(default=730, ge=1, le=36_500)
    retention_feedback_days: int = Field(default=1095, ge=1, le=36_500)
    retention_impressions_days: int = Field(default=180, ge=1, le=36_500)
    db_retry_after_s: int = Field(default=5, ge=1, le=3600)
    exploration: str = Field(default="off", max_length=32)
    impression_flush_ms: int = Field(default=200, ge=1, le=600_000)

    @field_validator("exploration")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        policy_from_setting(value)  # raises ValueError naming POLKU_EXPLORATION
        return value.strip().lower()

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < _MIN_SECRET_BYTES:
            raise ValueError(f"POLKU_JWT_SECRET must be at least {_MIN_SECRET_BYTES} bytes")
        return value

    @field_validator("oidc_issuer", "oidc_jwks_url", "oidc_audience", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _oidc_consistent(self) -> Settings:
        if self.oidc_issuer is None:
            if self.oidc_jwks_url is not None or self.oidc_audience is not None:
                raise ValueError("POLKU_OIDC_ISSUER is required when POLKU_OIDC_AUDIENCE or POLKU_OIDC_JWKS_URL is set")
            return self
        if self.oidc_audience is None:
            raise ValueError("POLKU_OIDC_AUDIENCE is required when POLKU_OIDC_ISSUER is set")
        for name in ("oidc_issuer", "oidc_jwks_url"):
            url = getattr(self, name)
            if url is not None and not _acceptable_url(url, self.env):
                raise ValueError(
                    f"POLKU_{name.upper()} must be an https URL (http only on a loopback host or when POLKU_ENV=dev)"
                )
        return self

    @property
    def oidc_enabled(self) -> bool:
        """True when identity-provider tokens are accepted."""
        return self.oidc_issuer is not None

    @property
    def model_uri(self) -> str:
        """Registry URI of the served model, e.g. ``models:/polku-ranker@champion``."""
        return f"models:/{self.model_name}@{self.model_alias}"

    @property
    def model_cache_dir(self) -> Path:
        """Local copy of the last good champion."""
        return self.data_dir / "model-cache"

    def jwt_key(self) -> str:
        """The HS256 key: ``POLKU_JWT_SECRET``, or in dev a generated key persisted under the data directory.

        Raises:
            UnsafeSettingsError: outside dev when no secret is configured.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.env != "dev":
            raise UnsafeSettingsError("POLKU_JWT_SECRET is required when POLKU_ENV is not 'dev'")
        return _dev_secret(self.data_dir)

    def hs256_key(self) -> str | None:
        """The HS256 key when local tokens are accepted: configured, or generated in dev; ``None`` otherwise."""
        if self.jwt_secret is None and self.env != "dev":
            return None
        return self.jwt_key()

    def require_authentication(self) -> None:
        """Fail fast unless tokens can be verified: outside dev, an identity provider or a secret is required.

        Raises:
            UnsafeSettingsError: ``POLKU_ENV=prod`` with neither ``POLKU_OIDC_ISSUER`` nor ``POLKU_JWT_SECRET``.
        """
        if self.env != "dev" and not self.oidc_enabled and self.jwt_secret is None:
            raise UnsafeSettingsError(
                "no token verification configured: set POLKU_OIDC_ISSUER and POLKU_OIDC_AUDIENCE (identity "
                "provider) or POLKU_JWT_SECRET when POLKU_ENV is not 'dev'"
            )
        self.hs256_key()  # in dev: create or read the generated secret now, not on the first request


def _acceptable_url(url: str, env: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname:
        return True
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    return parsed.scheme == "http" and bool(parsed.hostname) and (loopback or env == "dev")


@lru_cache(maxsize=8)
def _dev_secret(data_dir: Path) -> str:
    path = data_dir / _SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(secrets.token_urlsafe(48))
    logger.warning("POLKU_JWT_SECRET not set: using the dev secret in %s (never outside dev)", path)
    return path.read_text(encoding="utf-8").strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests pass their own to ``create_app``)."""
    return Settings()
