"""Settings of the HTTP process, read from ``POLKU_*`` environment variables (one object per process)."""

from __future__ import annotations

import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from features import paths

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
        jwt_secret: HS256 key; required outside dev.
        jwt_audience: expected ``aud`` claim.
        max_body_bytes: request bodies above this size get 413.
        cors_origins: allowed browser origins (comma-separated); empty = CORS closed.
        model_name: registered model name in MLflow.
        model_alias: registry alias served.
        mlflow_tracking_uri: MLflow store holding the registry.
        registry_enabled: when false the registry is not asked (local cache, then fallback).
        host: bind address of ``polku serve``.
        port: port of ``polku serve``.
        graceful_shutdown_s: seconds in-flight requests get after SIGTERM.
        db_retry_after_s: ``Retry-After`` sent with 503 when the database is unreachable.
    """

    model_config = SettingsConfigDict(env_prefix="POLKU_", extra="ignore", validate_default=True)

    env: Literal["dev", "prod"] = "dev"
    data_dir: Path = Field(default_factory=paths.data_dir)
    database_url: str = Field(default_factory=paths.database_url)
    jwt_secret: SecretStr | None = None
    jwt_audience: str = "polku"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    model_name: str = "polku-ranker"
    model_alias: str = "champion"
    mlflow_tracking_uri: str = Field(default_factory=paths.mlflow_tracking_uri)
    registry_enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    graceful_shutdown_s: int = Field(default=10, ge=0, le=300)
    db_retry_after_s: int = Field(default=5, ge=1, le=3600)

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
