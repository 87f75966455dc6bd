"""Feedback loop end to end: API decisions and outcomes -> de-identified export (CLI) -> training rows.

No mocks: the real app on a SQLite file, the real ``polku`` CLI, a tiny synthetic world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from features.records import ClientProfile
from polku import app as polku_app
from service.app import create_app
from service.auth import mint_token
from service.settings import Settings
from tests.service_fixtures import make_settings
from training.config import TrainConfig
from training.datasets import LOG_COLUMNS, build_training_data
from training.feedback import FeedbackFormatError, feedback_history, read_feedback_export
from training.world import World, generate_world

UNKNOWN_OPP = "zz-unknown-opportunity-001"


@dataclass(frozen=True)
class Loop:
    """A world, the export written from the service after feedback, and what was posted."""

    world: World
    export: Path
    consenting: tuple[str, str]
    refusing: str
    opps: tuple[str, ...]
    event_ids: tuple[str, ...]


def _event(eid: str, client: str, opp: str, when: str, **fields: object) -> dict[str, object]:
    etype = "decision" if "decision" in fields else "outcome"
    return {"event_id": eid, "type": etype, "client_id": client, "opportunity_id": opp, "occurred_at": when, **fields}


def _post(client: TestClient, settings: Settings, centre: str, body: dict[str, object]) -> None:
    token = mint_token(settings, role="counsellor", centre=centre, subject="counsellor-1")
    r = client.post("/v1/feedback", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    """Load a tiny world into a SQLite store, post feedback through the API, export it with the CLI."""
    tmp = tmp_path_factory.mktemp("loop")
    world = generate_world(n_clients=300, seed=3)
    world.save(tmp / "world")
    db = f"sqlite:///{tmp / 'polku.db'}"
    runner = CliRunner()
    mp = pytest.MonkeyPatch()
    mp.setenv("POLKU_DATABASE_URL", db)
    try:
        res = runner.invoke(polku_app, ["load-world", "--world", str(tmp / "world")])
        assert res.exit_code == 0, res.output
        helsinki = [c for c in world.clients if c.centre == "helsinki"]
        yes = [c for c in helsinki if c.consent.model_training][:2]
        no = next(c for c in helsinki if not c.consent.model_training)
        opps = [o.opportunity_id for o in world.opportunities if o.centre == "helsinki"][:5]
        a, b = yes[0].client_id, yes[1].client_id
        events = [
            _event("case-a-0001", a, opps[0], "2025-09-02T10:00:00Z", decision="accepted", rank_shown=1),
            _event("case-a-0002", a, opps[0], "2025-10-01T08:00:00Z", outcome="started"),
            _event("case-a-0003", a, opps[0], "2026-01-20T08:00:00Z", outcome="completed"),
            _event("case-a-0004", a, opps[0], "2026-06-20T08:00:00Z", outcome="employed_6m"),
            _event("case-a-0005", a, opps[1], "2025-09-02T10:01:00Z", decision="rejected", reason_code="timing"),
            _event("case-a-0006", a, opps[2], "2025-09-02T10:02:00Z", decision="accepted", rank_shown=3),
            _event("case-a-0007", a, opps[2], "2025-10-02T08:00:00Z", outcome="started"),
            _event("case-a-0008", a, opps[2], "2025-11-02T08:00:00Z", outcome="dropped_out"),
            _event("case-b-0001", b, opps[3], "2025-09-03T09:00:00Z", decision="accepted", rank_shown=2),
            _event("case-b-0002", b, UNKNOWN_OPP, "2025-09-03T09:05:00Z", decision="accepted"),
            _event("case-c-0001", no.client_id, opps[4], "2025-09-04T09:00:00Z", decision="accepted"),
        ]
        settings = make_settings(db, tmp / "data", registry_enabled=False)
        with TestClient(create_app(settings)) as client:
            for body in events:
                _post(client, settings, "helsinki", body)
        export = tmp / "export.jsonl"
        res = runner.invoke(polku_app, ["export-training-data", "--out", str(export)])
        assert res.exit_code == 0, res.output
        assert "10 feedback events" in res.output
    finally:
        mp.undo()
    return Loop(world, export, (a, b), no.client_id, tuple(opps), tuple(str(e["event_id"]) for e in events))


def test_export_holds_only_consenting_clients_without_ids_or_audit(loop: Loop) -> None:
    text = loop.export.read_text(encoding="utf-8")
    data = read_feedback_export(loop.export, strict=True)
    assert data.meta["format"] == "polku-training-export"
    assert len(data.clients) == sum(c.consent.model_training for c in loop.world.clients)
    assert all(c.consent.model_training for c in data.clients)
    assert all(c.client_id.startswith("anon-") for c in data.clients)
    assert not any(c.client_id in text for c in loop.world.clients)  # no original client id anywhere
    assert not any(eid in text for eid in loop.event_ids)  # event ids are pseudonymised too
    for audit_field in ("gender", "mother_tongue", "country_of_origin", "recorded_by", "counsellor-1"):
        assert audit_field not in text
    # the refusing client's decision is not exported: 8 + 2 events of the two consenting clients
    assert (len(data.decisions), len(data.outcomes)) == (5, 5)
    assert len({e.client_id for e in data.decisions}) == 2
    by_id = {c.client_id: c for c in loop.world.clients}
    exported = {json.dumps(c.model_dump(mode="json", exclude={"client_id"}), sort_keys=True) for c in data.clients}
    refusing = by_id[loop.refusing].model_dump(mode="json", exclude={"client_id"})
    assert json.dumps(refusing, sort_keys=True) not in exported
    assert data.opportunity_kinds[loop.opps[0]] == next(
        o.kind for o in loop.world.opportunities if o.opportunity_id == loop.opps[0]
    )


def test_feedback_history_rows_and_labels(loop: Loop) -> None:
    data = read_feedback_export(loop.export)
    fb = feedback_history(data, loop.world.opportunities)
    assert list(fb.history.columns) == list(LOG_COLUMNS)  # a log holds no noisy outcome score
    assert list(fb.history.dtypes) == list(loop.world.history[list(LOG_COLUMNS)].dtypes)
    assert fb.skipped_unknown_opportunity == 1
    assert fb.unknown_opportunity_ids == (UNKNOWN_OPP,)
    rows = fb.history.set_index("opportunity_id")
    flags = ["accepted", "started", "completed", "employed_6m"]
    assert rows.loc[loop.opps[0], flags].tolist() == [True, True, True, True]
    assert rows.loc[loop.opps[0], "position"] == 0
    assert rows.loc[loop.opps[1], flags].tolist() == [False, False, False, False]
    assert rows.loc[loop.opps[1], "position"] == -1
    assert rows.loc[loop.opps[2], flags].tolist() == [True, True, False, False]  # dropped out after starting
    assert rows.loc[loop.opps[3], flags].tolist() == [True, False, False, False]
    assert {str(d) for d in fb.reference_dates.values()} == {"2025-09-02", "2025-09-03"}


def test_build_training_data_appends_feedback_to_training_only(loop: Loop) -> None:
    cfg = TrainConfig(unshown_negatives=5)
    base = build_training_data(loop.world, cfg)
    data = build_training_data(loop.world, cfg, read_feedback_export(loop.export))
    assert data.feedback is not None
    assert len(data.train) == len(base.train) + len(data.feedback)
    assert data.split == base.split  # the test cohort is the world's, untouched
    assert data.valid is not None
    assert base.valid is not None
    np.testing.assert_array_equal(data.valid.query_ids, base.valid.query_ids)
    fb_rows = np.char.startswith(data.train.client_ids.astype(str), "anon-")
    assert int(fb_rows.sum()) == len(data.feedback)
    shown = data.feedback.shown
    labels = dict(zip(data.feedback.opportunity_ids[shown], data.feedback.y[shown], strict=True))
    assert labels == {loop.opps[0]: 4, loop.opps[1]: 0, loop.opps[2]: 2, loop.opps[3]: 1}
    assert (data.feedback.y[~shown] == 0).all()
    assert (~shown).any()
    assert data.feedback_stats["skipped_unknown_opportunity"] == 1
    assert data.feedback_stats["rows"] == len(data.feedback)
    assert not set(data.feedback.client_ids) & set(data.split.test_client_ids)
    assert np.isfinite(data.train.X).all()


def test_bad_lines_are_reported_with_number_and_reason(loop: Loop, tmp_path: Path) -> None:
    lines = loop.export.read_text(encoding="utf-8").splitlines()
    good = json.loads(next(line for line in lines if '"feedback"' in line))
    bad_event = {**good, "event": {**good["event"], "rank_shown": 0, "event_id": "evt-bad-rank-0001"}}
    orphan = {**good, "event": {**good["event"], "client_id": "anon-nobody", "event_id": "evt-orphan-0001"}}
    refusing = json.loads(next(line for line in lines if '"client"' in line))
    refusing["profile"]["consent"]["model_training"] = False
    refusing["profile"]["client_id"] = "anon-refusing"
    extra = ["{not json", json.dumps(bad_event), json.dumps(orphan), json.dumps({"kind": "x"}), json.dumps(refusing)]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([*lines, *extra]) + "\n", encoding="utf-8")
    data = read_feedback_export(path)
    n = len(lines)
    got = {b.line: b.reason for b in data.bad_lines}
    assert sorted(got) == [n + 1, n + 2, n + 3, n + 4, n + 5]
    assert got[n + 1].startswith("not JSON")
    assert "rank_shown" in got[n + 2]
    assert "greater than or equal to 1" in got[n + 2]
    assert "not among" in got[n + 3]
    assert "kind" in got[n + 4]
    assert "model_training" in got[n + 5]
    assert data.n_events == 10  # the good lines are all kept
    with pytest.raises(FeedbackFormatError) as exc:
        read_feedback_export(path, strict=True)
    assert len(exc.value.bad_lines) == 5


def test_not_an_export_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"kind": "meta", "format": "something-else", "version": 1}) + "\n", encoding="utf-8")
    with pytest.raises(FeedbackFormatError, match="not a polku-training-export"):
        read_feedback_export(path)


def test_train_cli_logs_feedback_dataset(loop: Loop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    world_dir = tmp_path / "world"
    loop.world.save(world_dir)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("POLKU_DATA_DIR", str(tmp_path))
    config = tmp_path / "config.yaml"
    config.write_text("num_boost_round: 10\nmax_test_clients: 15\nunshown_negatives: 5\n", encoding="utf-8")
    args = ["train", "--world", str(world_dir), "--no-promote", "--config", str(config), "--feedback", str(loop.export)]
    res = CliRunner().invoke(polku_app, args)
    assert res.exit_code == 0, res.output
    assert "feedback:" in res.output
    assert "skipped 1 events on unknown opportunities" in res.output
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("polku")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id])[0]
    assert run.inputs is not None
    contexts = {tag.value for d in run.inputs.dataset_inputs for tag in d.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"training", "feedback"}
    assert int(run.data.params["data.feedback_rows"]) > 4
    assert run.data.params["data.feedback_skipped_unknown_opportunity"] == "1"


def test_profiles_in_export_validate_as_client_profiles(loop: Loop) -> None:
    for line in loop.export.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["kind"] == "client":
            ClientProfile.model_validate(record["profile"], strict=False)
