"""Schemathesis fuzzing of every operation of the app's own OpenAPI, with a token whose role can reach it.

Each operation gets positive (schema-valid) and negative (schema-invalid) cases; every response must be a
non-5xx answer that conforms to the documented schema (status code, content type, headers, body). CI (``CI``
set) runs at least 1,000 cases in total; a local run fewer. SQLite only, for speed.

Excluded check: ``positive_data_acceptance`` ("schema-valid request rejected"): the schema cannot express the
semantic validation the API does on top of it (unknown ESCO / ISCO / municipality codes, CEFR level order,
dates in order, ids that must match the path), so schema-valid bodies are often and rightly rejected with 422.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.python.asgi import get_client
from schemathesis.specs.openapi.checks import positive_data_acceptance

from models.package import PolkuModel
from service.app import create_app
from service.auth import mint_token
from service.model_holder import ModelHolder
from service.settings import Settings
from tests.service_fixtures import ApiEnv, make_settings, registry_from, seed_store

IN_CI = bool(os.environ.get("CI"))
TOTAL_CASES = 1200 if IN_CI else 150
OPEN = {"/healthz", "/readyz"}

# (method, path) -> (role, centre) that may reach the route; anything unlisted (a new route) is fuzzed as admin.
ROLE_OF: dict[tuple[str, str], tuple[str, str | None]] = {
    ("POST", "/v1/suggestions"): ("counsellor", "helsinki"),
    ("POST", "/v1/opportunities/{opportunity_id}/candidates"): ("coordinator", "helsinki"),
    ("PUT", "/v1/clients/{client_id}"): ("counsellor", "helsinki"),
    ("GET", "/v1/clients/{client_id}"): ("counsellor", "helsinki"),
    ("DELETE", "/v1/clients/{client_id}"): ("counsellor", "helsinki"),
    ("GET", "/v1/clients/{client_id}/access-log"): ("counsellor", "helsinki"),
    ("GET", "/v1/opportunities"): ("counsellor", "helsinki"),
    ("GET", "/v1/opportunities/{opportunity_id}"): ("coordinator", "helsinki"),
    ("PUT", "/v1/opportunities/{opportunity_id}"): ("coordinator", "helsinki"),
    ("DELETE", "/v1/opportunities/{opportunity_id}"): ("coordinator", "helsinki"),
    ("POST", "/v1/feedback"): ("counsellor", "helsinki"),
    ("POST", "/v1/coding:suggest"): ("coordinator", "helsinki"),
    ("GET", "/v1/model"): ("data_scientist", None),
    ("POST", "/v1/admin/model:reload"): ("admin", None),
    ("GET", "/metrics"): ("data_scientist", None),
}
# Values the store holds, mixed into generated path parameters so some cases reach stored records.
KNOWN_IDS = {"client_id": ["hel-c-000", "hel-c-003", "esp-c-000"], "opportunity_id": ["hel-vac-000", "hel-tr-degree"]}


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every documented operation (read from the app's OpenAPI at collection time)."""
    spec = create_app(Settings(registry_enabled=False)).openapi()
    return sorted((m.upper(), p) for p, item in spec["paths"].items() for m in item if m != "parameters")


OPERATIONS = _operations()
PER_OPERATION = math.ceil(TOTAL_CASES / len(OPERATIONS))


@dataclass
class FuzzEnv:
    """An app with its lifespan entered, its loaded schema and an in-process ASGI session."""

    api: ApiEnv
    schema: schemathesis.BaseSchema
    session: object


@pytest.fixture(scope="module")
def fuzz(small_model: PolkuModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEnv]:
    """The real app on SQLite with the tiny store, and its schema loaded through the token-protected route."""
    data = tmp_path_factory.mktemp("fuzz")
    settings = make_settings(f"sqlite:///{data / 'polku.db'}", data)
    state: dict[str, object] = {"model": small_model, "version": "1"}
    holder = ModelHolder(settings, registry_loader=registry_from(state))
    app = create_app(settings, model_holder=holder)
    with TestClient(app) as client:
        env = ApiEnv(client, settings, holder, state)
        seed_store(env)
        token = mint_token(settings, role="data_scientist", centre=None)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": f"Bearer {token}"})
        with get_client(app) as session:  # type: ignore[arg-type]
            yield FuzzEnv(env, schema, session)


def _auth(env: FuzzEnv, method: str, path: str) -> dict[str, str]:
    role, centre = ROLE_OF.get((method, path), ("admin", None))
    return {"Authorization": f"Bearer {mint_token(env.api.settings, role=role, centre=centre)}"}


def _strategy(env: FuzzEnv, method: str, path: str) -> st.SearchStrategy[Case[Any]]:
    operation = env.schema[path][method]
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategies.append(operation.as_strategy(generation_mode=mode))
        except Exception:  # noqa: BLE001, S112 - an operation without anything to negate has no negative mode
            continue
    return st.one_of(strategies)


def _header_negated(case: Case[Any]) -> bool:
    """True when the case deliberately breaks its headers (e.g. drops ``Authorization``): send them as generated."""
    meta = case.meta
    if meta is None:
        return False
    return any(loc.name == "HEADER" and info.mode.is_negative for loc, info in meta.components.items())


def _with_known_ids(case: Case[Any], method: str, pick: int) -> None:
    """Point a third of the positive cases at stored records (DELETE spares them for the other operations)."""
    if method == "DELETE" or pick % 3 or case.meta is None or case.meta.generation.mode.is_negative:
        return
    for name, known in KNOWN_IDS.items():
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = known[pick % len(known)]  # type: ignore[index]
        if isinstance(case.body, dict) and isinstance(case.body.get(name), str):
            case.body[name] = known[pick % 2]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(fuzz: FuzzEnv, method: str, path: str) -> None:
    headers = _auth(fuzz, method, path) if path not in OPEN else {}
    label = f"{method} {path}"
    count = 0

    @settings(
        max_examples=PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(fuzz, method, path), pick=st.integers(0, 5))
    def run(case: Case[Any], pick: int) -> None:
        nonlocal count
        count += 1
        _with_known_ids(case, method, pick)
        sent = {} if _header_negated(case) else headers
        response = case.call(session=fuzz.session, headers=sent)  # type: ignore[arg-type]
        assert response.status_code < 500, (label, response.status_code, response.text[:300])
        case.validate_response(response, headers=sent, excluded_checks=[positive_data_acceptance])

    run()
    # Operations without inputs exhaust their (tiny) space early; the others run their full budget.
    assert count >= 1, f"{label}: no case generated"


def test_fuzz_covers_every_route_and_enough_cases() -> None:
    """Every operation of the spec is fuzzed with a role that can reach it; CI budgets at least 1,000 cases."""
    routes = {(m, p) for m, p in OPERATIONS if p not in OPEN}
    assert routes - set(ROLE_OF) == set(), "new route: add it to ROLE_OF (or it is fuzzed as admin)"
    with_inputs = [op for op in OPERATIONS if op[1] not in OPEN]
    assert len(with_inputs) * PER_OPERATION >= (1000 if IN_CI else 100)
