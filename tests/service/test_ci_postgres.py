"""No silent skips in CI: PostgreSQL tests fail, instead of skipping, when ``CI`` is set and no server starts."""

from __future__ import annotations

import pytest

from tests import service_fixtures


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_fixtures, "_pg_available", lambda: False)


def test_postgres_tests_fail_under_ci_when_the_server_cannot_be_started(monkeypatch: pytest.MonkeyPatch) -> None:
    _unreachable(monkeypatch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        next(service_fixtures.fresh_pg_database("polku_ci"))


def test_postgres_tests_skip_outside_ci_when_the_server_cannot_be_started(monkeypatch: pytest.MonkeyPatch) -> None:
    _unreachable(monkeypatch)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        next(service_fixtures.fresh_pg_database("polku_ci"))
