"""Clean contracts for integrators: stable operation ids and tags, a published document, a generated client.

The generated-client test builds a Python client with openapi-python-client from the document the test app
serves, and calls suggestions and candidates through it (its httpx client is the app's TestClient).
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import openapi_document, openapi_json
from tests.service_fixtures import ApiEnv

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "docs" / "openapi.json"
REF = date(2025, 9, 1)
PACKAGE = "polku_api_client"

# The contract: renaming an operation breaks every generated client, so each id is listed here.
OPERATION_IDS = {
    ("post", "/v1/suggestions"): "createSuggestions",
    ("post", "/v1/opportunities/{opportunity_id}/candidates"): "rankCandidates",
    ("post", "/v1/coding:suggest"): "suggestCoding",
    ("put", "/v1/clients/{client_id}"): "upsertClient",
    ("get", "/v1/clients/{client_id}"): "getClient",
    ("delete", "/v1/clients/{client_id}"): "deleteClient",
    ("get", "/v1/clients/{client_id}/access-log"): "listClientAccessLog",
    ("get", "/v1/opportunities"): "listOpportunities",
    ("put", "/v1/opportunities/{opportunity_id}"): "upsertOpportunity",
    ("get", "/v1/opportunities/{opportunity_id}"): "getOpportunity",
    ("delete", "/v1/opportunities/{opportunity_id}"): "deleteOpportunity",
    ("post", "/v1/feedback"): "recordFeedback",
    ("get", "/v1/model"): "getModel",
    ("post", "/v1/admin/model:reload"): "reloadModel",
    ("get", "/healthz"): "checkLiveness",
    ("get", "/readyz"): "checkReadiness",
    ("get", "/metrics"): "getMetrics",
}


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): op for path, item in document["paths"].items() for method, op in item.items()}


def test_every_operation_has_a_stable_readable_id_and_a_declared_tag() -> None:
    document = openapi_document()
    operations = _operations(document)
    assert {key: op.get("operationId") for key, op in operations.items()} == OPERATION_IDS
    declared = {tag["name"] for tag in document["tags"]}
    for key, op in operations.items():
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", op["operationId"]), key
        assert len(op.get("tags", [])) == 1, key
        assert op["tags"][0] in declared, key


def test_published_document_is_current() -> None:
    current = openapi_json(openapi_document())
    assert PUBLISHED.read_text(encoding="utf-8") == current, (
        "docs/openapi.json is out of date: run `uv run polku openapi --out docs/openapi.json`"
    )


# ------------------------------------------------------------------------------------------ generated client
_GENERATED: dict[str, ModuleType] = {}


def _generate(document_text: str, root: Path) -> ModuleType:
    """Generate the client package once per distinct document and import it."""
    from openapi_python_client import generate
    from openapi_python_client.config import Config, ConfigFile, MetaType

    digest = hashlib.sha256(document_text.encode()).hexdigest()[:12]
    if digest in _GENERATED:
        return _GENERATED[digest]
    source = root / "openapi.json"
    source.write_text(document_text, encoding="utf-8")
    out = root / PACKAGE
    config = Config.from_sources(
        ConfigFile(post_hooks=[]),  # no formatter needed to import the code
        MetaType.NONE,
        document_source=source,
        file_encoding="utf-8",
        overwrite=True,
        output_path=out,
    )
    errors = generate(config=config)
    assert not errors, [str(e) for e in errors]
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
        package = importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
    _GENERATED[digest] = package
    return package


def _client(package: ModuleType, api: ApiEnv, role: str) -> Any:
    """The generated ``AuthenticatedClient`` whose httpx client is a TestClient of the running app."""
    token = api.token(role)
    generated = package.AuthenticatedClient(base_url="http://testserver", token=token)
    transport = TestClient(api.client.app, headers={"Authorization": f"Bearer {token}"})
    return generated.set_httpx_client(transport)


def test_generated_client_calls_suggestions_and_candidates_with_typed_results(
    api: ApiEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    served = api.client.get("/openapi.json", headers=api.auth("data_scientist", None))
    assert served.status_code == 200
    package = _generate(served.text, tmp_path_factory.mktemp("generated"))
    create_suggestions = importlib.import_module(f"{PACKAGE}.api.suggestions.create_suggestions")
    rank_candidates = importlib.import_module(f"{PACKAGE}.api.candidates.rank_candidates")
    models = importlib.import_module(f"{PACKAGE}.models")

    counsellor = _client(package, api, "counsellor")
    request = models.SuggestionsRequest(client_id="hel-c-000", k=3, lang=models.SuggestionsRequestLang.EN)
    request.reference_date = REF
    suggestions = create_suggestions.sync(client=counsellor, body=request)
    assert isinstance(suggestions, models.SuggestionsResponse), suggestions
    assert suggestions.client_id == "hel-c-000"
    assert suggestions.reference_date == REF
    assert isinstance(suggestions.model, models.ModelInfo)
    assert suggestions.model.name == "polku-ranker"
    assert suggestions.suggestions, "at least one kind answered"
    for group in suggestions.suggestions:
        assert isinstance(group, models.KindSuggestions)
        assert group.count == len(group.items) <= 3
        for item in group.items:
            assert isinstance(item, models.SuggestionItem)
            assert isinstance(item.score, float)
            assert isinstance(item.rank, int)

    coordinator = _client(package, api, "coordinator")
    ranked = rank_candidates.sync_detailed(
        "hel-vac-000", client=coordinator, body=models.CandidatesRequest(k=5, reference_date=REF)
    )
    assert ranked.status_code == 200
    candidates = ranked.parsed
    assert isinstance(candidates, models.CandidatesResponse), candidates
    assert candidates.opportunity_id == "hel-vac-000"
    assert candidates.count == len(candidates.data) > 0
    assert all(isinstance(c, models.Candidate) and isinstance(c.score, float) for c in candidates.data)
    assert [c.rank for c in candidates.data] == list(range(1, len(candidates.data) + 1))

    # errors are typed too: an unknown opportunity answers the ErrorResponse model
    missing = rank_candidates.sync(
        "hel-vac-nope", client=coordinator, body=models.CandidatesRequest(k=5, reference_date=REF)
    )
    assert isinstance(missing, models.ErrorResponse)
    assert missing.errors[0].reason == "opportunity not found"
