"""Suite-wide setup: an isolated data directory and MLflow store, hypothesis profiles, shared fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings

# Isolate every test session from the developer's ./var before any project module reads the environment.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="polku-test-"))
os.environ["POLKU_DATA_DIR"] = str(_SESSION_DIR)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_DIR / 'mlflow.db'}"
os.environ.setdefault("POLKU_JWT_SECRET", "test-secret-that-is-long-enough-for-hs256-0123456789")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Registration compiles the trees (seconds each); only tests/test_compiled.py does, once, with compiled_trees=True.
os.environ.setdefault("POLKU_COMPILE_TREES", "0")

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
pytest_plugins = ["tests.service_fixtures"]
