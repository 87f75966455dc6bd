"""Where Polku keeps its data: one data directory (``POLKU_DATA_DIR``, default ``<repo>/var``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The data directory (world, MLflow store, service database, model cache)."""
    return Path(os.environ.get("POLKU_DATA_DIR") or REPO_ROOT / "var").resolve()


def world_dir() -> Path:
    """Default location of the synthetic world."""
    return data_dir() / "world"


def mlflow_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or an embedded SQLite store under the data directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir() / 'mlflow.db'}"


def mlflow_artifact_root() -> Path:
    """Artifact root used when the experiment is created by Polku."""
    return data_dir() / "mlartifacts"


def database_url() -> str:
    """``POLKU_DATABASE_URL`` or a SQLite file under the data directory."""
    return os.environ.get("POLKU_DATABASE_URL") or f"sqlite:///{data_dir() / 'polku.db'}"


def model_cache_dir() -> Path:
    """Local copy of the last good champion, used when MLflow is unreachable."""
    return data_dir() / "model-cache"
