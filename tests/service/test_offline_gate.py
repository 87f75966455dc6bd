"""The offline gate on logs the real app wrote (SQLite and PostgreSQL): exported impressions with exploration,
feedback joined to them, and a replay that recovers the logged propensities exactly."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from models.package import PolkuModel
from service.app import create_app
from service.export import export_training_data
from service.model_holder import ModelHolder
from tests.service_fixtures import ApiEnv, make_settings, registry_from, seed_store, tiny_catalogue, tiny_clients
from training.feedback import FeedbackData, read_feedback_export
from training.offline_gate import OfflineEvaluation, offline_decision, offline_policy_evaluation, policy_named
from training.ope import Estimate

REF = "2025-09-01"


@pytest.fixture(scope="module")
def logged(db_url: str, small_model: PolkuModel, tmp_path_factory: pytest.TempPathFactory) -> FeedbackData:
    """Suggestions served with exploration (T = 1) to consenting clients, some accepted, exported."""
    tmp = tmp_path_factory.mktemp("offline")
    settings = make_settings(db_url, tmp, exploration="1.0")
    holder = ModelHolder(settings, registry_loader=registry_from({"model": small_model, "version": "1"}))
    app = create_app(settings, model_holder=holder)
    rng = np.random.default_rng(3)
    with TestClient(app) as client:
        env = ApiEnv(client, settings, holder, {})
        seed_store(env)
        h = env.auth("counsellor")
        base = next(c for c in tiny_clients() if c.client_id == "hel-c-003")  # several eligible vacancies
        clones = [
            base.model_copy(
                update={
                    "client_id": f"hel-x-{n:03d}",
                    "consent": base.consent.model_copy(update={"model_training": True}),
                }
            )
            for n in range(3)
        ]
        for clone in clones:
            body = {"profile": clone.model_dump(mode="json")}
            assert client.put(f"/v1/clients/{clone.client_id}", json=body, headers=h).status_code == 201
        for c in [*tiny_clients(), *clones]:
            if c.centre != "helsinki" or not c.consent.matching:
                continue
            for _ in range(4):
                body = {"client_id": c.client_id, "kinds": ["vacancy"], "k": 6, "reference_date": REF}
                r = client.post("/v1/suggestions", json=body, headers=h)
                assert r.status_code == 200, r.text
                items = r.json()["suggestions"][0]["items"]
                if not items:
                    continue
                chosen = items[int(rng.integers(len(items)))]["opportunity_id"]
                event = {
                    "event_id": f"evt-{uuid.uuid4().hex}",
                    "type": "decision",
                    "client_id": c.client_id,
                    "opportunity_id": chosen,
                    "decision": "accepted",
                    "impression_id": r.json()["impression_id"],
                    "occurred_at": "2025-09-02T10:00:00Z",
                }
                assert client.post("/v1/feedback", json=event, headers=h).status_code == 201
        with app.state.session_factory() as s:
            report = export_training_data(s, tmp / "export.jsonl")
    assert report.impressions > 0
    return read_feedback_export(tmp / "export.jsonl")


@pytest.fixture(scope="module")
def export_file(logged: FeedbackData) -> Path:
    assert logged.source is not None
    return logged.source


def test_export_carries_explored_impressions_with_their_reference_day(logged: FeedbackData) -> None:
    assert logged.impressions
    assert any(i.explored for i in logged.impressions)
    assert {str(i.reference_date) for i in logged.impressions} == {REF}
    assert all(0 < i.propensity <= 1 for i in logged.impressions)
    assert all(i.propensity == 1.0 for i in logged.impressions if i.position <= 3)
    assert any(e.impression_id is not None for e in logged.decisions)


def test_replaying_the_logging_model_recovers_the_logged_propensities(
    logged: FeedbackData, small_model: PolkuModel
) -> None:
    """Target = the serving model and policy: every weight is exactly 1, so IPS equals the logged value."""
    found = offline_policy_evaluation(logged, tiny_catalogue(), small_model, samples=50)
    assert found.slates > 0
    ips = found.estimates["ips"]
    assert ips.support == 1.0
    assert ips.max_weight == pytest.approx(1.0, abs=1e-9)
    assert ips.value == pytest.approx(found.logged_value, rel=1e-9)
    assert found.estimates["snips"].value == pytest.approx(found.logged_value, rel=1e-9)


def test_another_candidate_gets_an_estimate_and_a_decision(logged: FeedbackData, small_model: PolkuModel) -> None:
    found = offline_policy_evaluation(logged, tiny_catalogue(), small_model.points_baseline(), samples=50)
    snips = found.estimates["snips"]
    assert 0.0 <= snips.support <= 1.0
    ok, gain, reason = offline_decision(found, min_gain_lower_bound=-0.005)
    assert isinstance(ok, bool)
    assert "group gaps are not measurable" in reason
    if snips.support >= 0.05:
        assert gain["diff"] == pytest.approx(snips.value - found.logged_value)


def test_decision_rule_needs_support_and_a_lower_bound() -> None:
    def evaluation(value: float, low: float, support: float) -> OfflineEvaluation:
        est = Estimate(value, low, value + 0.1, support, 2.0)
        return OfflineEvaluation({"ips": est, "snips": est}, logged_value=0.5, slates=100)

    assert offline_decision(evaluation(0.6, 0.52, 1.0), min_gain_lower_bound=-0.005)[0]
    assert not offline_decision(evaluation(0.6, 0.40, 1.0), min_gain_lower_bound=-0.005)[0]
    refused = offline_decision(evaluation(0.9, 0.8, 0.01), min_gain_lower_bound=-0.005)
    assert not refused[0]
    assert "support" in refused[2]


def test_logged_policy_names_round_trip() -> None:
    assert policy_named("deterministic").name == "deterministic"
    assert policy_named("plackett-luce(t=0.5,top=3)").name == "plackett-luce(t=0.5,top=3)"
    with pytest.raises(ValueError, match="unknown logged policy"):
        policy_named("epsilon-greedy")


def test_cli_needs_logs_for_the_offline_gate(tmp_path: Path) -> None:
    from training.cli import app

    result = CliRunner().invoke(
        app, ["promote", "--version", "1", "--offline-policy-evaluation", "--world", str(tmp_path)]
    )
    assert result.exit_code != 0


def test_promote_offline_moves_the_alias_and_tags_the_version(
    export_file: Path, small_model: PolkuModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logging model itself as the candidate: its estimate equals the logged value, so the gate promotes it."""
    import mlflow
    from mlflow import MlflowClient

    from models.packaging import log_polku_model
    from training.config import TrainConfig
    from training.promote import promote_offline

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("offline-gate", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        log_polku_model(small_model, registered_model_name="polku-ranker", compiled_trees=False)
    decision = promote_offline(
        1, logs=export_file, opportunities=tiny_catalogue(), config=TrainConfig(), tracking_uri=uri
    )
    assert decision.promoted, decision.reason
    assert decision.alias == "champion"
    assert decision.candidate_ndcg == pytest.approx(decision.reference_ndcg)  # SNIPS of itself = the logged value
    assert "offline policy evaluation" in decision.reason
    version = MlflowClient(uri).get_model_version("polku-ranker", "1")
    assert version.tags["gate.alias"] == "champion"
    assert str(MlflowClient(uri).get_model_version_by_alias("polku-ranker", "champion").version) == "1"
