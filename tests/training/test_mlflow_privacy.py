"""No personal data in MLflow: a training run on a tiny world is scanned for its clients' ids and profiles.

Every artifact of the run and of its logged model (input example, signature, bundle, reports, figures,
environment files), every parameter, tag and metric name, and the dataset records are read as text and
searched for each training client's id and for its profile as serialised JSON (plain and JSON-escaped, as a
JSON string inside the input example would be). The generated example client must be found (the scan sees the
input example) and no training client may be.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.example import FAKE_CLIENT_ID
from training.config import TrainConfig

TINY_CLIENTS = 150
pytestmark = pytest.mark.slow  # one training run (about 15 s)


def _variants(text: str) -> set[str]:
    """The text as written and as it reads inside a JSON string (quotes and slashes escaped)."""
    escaped = json.dumps(text)[1:-1]
    return {text, escaped, escaped.replace("/", "\\/")}


def _needles(profile: dict[str, Any]) -> set[str]:
    """Distinctive forms of one client's data: its id, its whole profile and its skills, languages and goals."""
    found = {profile["client_id"]}
    without_id = {k: v for k, v in profile.items() if k != "client_id"}
    parts: list[object] = [profile, without_id]
    parts += [profile[k] for k in ("skills", "languages", "prior_occupations") if profile.get(k)]
    for part in parts:
        for separators in ((",", ":"), (", ", ": ")):
            text = json.dumps(part, separators=separators)
            if len(text) >= 40:  # shorter fragments ("[]", one language) are vocabulary, not a person
                found |= _variants(text)
    return found


def _texts(root: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield str(path.relative_to(root)), path.read_bytes().decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train on a tiny world; download the run's artifacts and the logged model; collect params, tags, datasets."""
    import mlflow
    from mlflow import MlflowClient

    from training.train import train
    from training.world import World, generate_world

    world_dir = tmp_path_factory.mktemp("world")
    generate_world(n_clients=TINY_CLIENTS, seed=5).save(world_dir)
    tracking = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    config = TrainConfig(num_boost_round=15, min_group_size=5, max_group_gap=1.0)
    result = train(world_dir, config=config, promote=False, tracking_uri=tracking)
    client = MlflowClient(tracking_uri=tracking)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking)
    try:
        run_dir = Path(
            mlflow.artifacts.download_artifacts(run_id=result.run_id, dst_path=str(tmp_path_factory.mktemp("run")))
        )
        model_dir = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=result.model_uri, dst_path=str(tmp_path_factory.mktemp("m"))
            )
        )
    finally:
        mlflow.set_tracking_uri(previous)
    data = client.get_run(result.run_id).data
    inputs = client.get_run(result.run_id).inputs
    records = {
        "params": json.dumps(data.params),
        "tags": json.dumps(data.tags),
        "metrics": json.dumps(sorted(data.metrics)),
        "datasets": json.dumps([str(d.dataset) for d in inputs.dataset_inputs]),
    }
    if result.model_version is not None:
        mv = client.get_model_version("polku-ranker", result.model_version)
        records["model_version"] = json.dumps({"tags": mv.tags, "source": mv.source, "description": mv.description})
    world = World.load(world_dir)
    return {
        "texts": [*_texts(run_dir), *(("model/" + n, t) for n, t in _texts(model_dir)), *records.items()],
        "clients": [c.model_dump(mode="json") for c in world.clients],
    }


def test_the_input_example_is_the_generated_fake_client(run: dict[str, Any]) -> None:
    examples = [(name, text) for name, text in run["texts"] if "input_example" in name]
    assert examples, "the logged model has an input example"
    assert all(FAKE_CLIENT_ID in text for _, text in examples)


def test_no_training_client_id_or_profile_in_any_artifact_param_tag_or_dataset(run: dict[str, Any]) -> None:
    needles: dict[str, str] = {}
    for profile in run["clients"]:
        for needle in _needles(profile):
            needles[needle] = profile["client_id"]
    assert len(run["clients"]) == TINY_CLIENTS
    leaks = sorted(
        {(name, needles[n]) for name, text in run["texts"] for n in needles if n in text},
    )
    assert not leaks, f"training clients found in MLflow: {leaks[:10]}"
    assert len(run["texts"]) > 10, [name for name, _ in run["texts"]]
