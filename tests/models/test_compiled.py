"""Compiled trees: equal to the booster, shipped through MLflow, and a booster fallback that never crashes.

The module compiles once (a module fixture, one worker); every other case edits copies of the saved files.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from features.pairs import PairBatch, PairFeaturizer
from models import compiled
from models.compiled import COMPILED_DIR, LIBRARY_FILE, MANIFEST_FILE, TOLERANCE, PlatformTag, probe_rows
from models.outcome import ACCEPTANCE_DIR
from models.package import PolkuModel
from models.packaging import (
    RANKER_DIR,
    compile_trees,
    load_local,
    load_polku_model,
    log_polku_model,
    make_input_example,
    predict_frame,
    save_local,
)
from models.rankers import LightGBMRanker
from service.app import create_app
from service.auth import mint_token
from service.model_holder import ModelHolder
from tests.factories import REFERENCE_DATE
from tests.service_fixtures import make_settings, registry_from, tiny_catalogue, tiny_clients

pytestmark = pytest.mark.xdist_group("compiled")
COMPILED_LOG = "compiled trees not used"


def _model() -> PolkuModel:
    """The served kind of model: an outcome-aware ranker whose acceptance booster has 60 trees."""
    from models.outcome import OutcomeAwareRanker

    clients, items = tiny_clients(), tiny_catalogue()
    ci, oi = np.meshgrid(np.arange(len(clients)), np.arange(len(items)), indexing="ij")
    batch = PairBatch(clients, items, ci.ravel(), oi.ravel())
    featurizer = PairFeaturizer(reference_date=REFERENCE_DATE).fit(batch, acceptance={})
    X = featurizer.transform(batch)
    names = [str(n) for n in featurizer.get_feature_names_out()]
    signal = X[:, names.index("ess_cov")] - 0.3 * X[:, names.index("lang_gap_best")]
    y = np.digitize(signal, np.quantile(signal, [0.5, 0.7, 0.85, 0.95]))
    params = {"min_data_in_leaf": 3, "num_leaves": 7, "num_threads": 1}
    ranker = OutcomeAwareRanker(num_boost_round=60, params=params)
    ranker.fit(X, y, batch.client_idx, feature_names=names)
    return PolkuModel(featurizer, ranker, {"name": "polku-ranker", "version": "compiled-test"})


@pytest.fixture(scope="module")
def model() -> PolkuModel:
    """The model with its trees compiled (the one compilation of this module)."""
    m = _model()
    engine = compile_trees(m)
    assert engine is not None
    assert engine.compiled
    assert not engine.fallback
    return m


@pytest.fixture(scope="module")
def bundle(model: PolkuModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved bundle of the compiled model (tests copy it before editing)."""
    return save_local(model, tmp_path_factory.mktemp("bundle") / "model")


def _acceptance(model: PolkuModel) -> LightGBMRanker:
    inner = model.ranker.acceptance_  # type: ignore[attr-defined]
    assert isinstance(inner, LightGBMRanker)
    return inner


def _rows(model: PolkuModel) -> np.ndarray:
    """Real feature rows of the tiny world's pairs, plus probe rows at the split thresholds (with NaN)."""
    clients, items = tiny_clients(), tiny_catalogue()
    enc = model.encode_items(items)
    real = np.vstack(
        [model.featurizer.transform_encoded(model.encode_client(c), enc, np.arange(len(items))) for c in clients]
    )
    inner = _acceptance(model)
    cols = model.ranker.acceptance_columns_  # type: ignore[attr-defined]
    probes = probe_rows(inner.model_text(), inner.n_features, n_rows=500, seed=11)
    return np.vstack([real[:, cols].astype(np.float64), probes])


def _copy(bundle: Path, tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "model"
    shutil.copytree(bundle, target)
    return target, target / RANKER_DIR / ACCEPTANCE_DIR / COMPILED_DIR


def test_compiled_trees_equal_the_booster(model: PolkuModel) -> None:
    inner = _acceptance(model)
    assert inner.booster_.num_trees() >= 40
    rows = _rows(model)
    compiled_scores = inner.score(rows)
    booster_scores = inner.predict_booster(rows)
    assert np.max(np.abs(compiled_scores - booster_scores)) <= TOLERANCE
    assert np.max(np.abs(inner.score(rows[:1]) - booster_scores[:1])) <= TOLERANCE  # one row
    assert inner.score(rows[:0]).shape == (0,)
    # Non-contiguous and float32 input give the same scores.
    np.testing.assert_allclose(inner.score(np.asfortranarray(rows)), compiled_scores, rtol=0, atol=0)
    assert np.max(np.abs(inner.score(rows.astype(np.float32)) - inner.predict_booster(rows.astype(np.float32)))) <= (
        TOLERANCE
    )


def test_compiled_ranker_keeps_contributions_and_ranking(model: PolkuModel) -> None:
    items = tiny_catalogue()
    enc = model.encode_items(items)
    client = tiny_clients()[0]
    result = model.rank(client, enc, np.arange(len(items)), k=5, reference_date=REFERENCE_DATE)
    # Contributions still come from LightGBM's TreeSHAP and still sum to the (compiled) score.
    np.testing.assert_allclose(result.contributions.sum(axis=1), result.scores, atol=1e-6)


def test_bundle_round_trip_uses_the_shipped_library(model: PolkuModel, bundle: Path, tmp_path: Path) -> None:
    loaded = load_local(bundle)
    assert loaded.trees is not None
    assert loaded.trees.compiled
    manifest = json.loads((bundle / RANKER_DIR / ACCEPTANCE_DIR / COMPILED_DIR / MANIFEST_FILE).read_text())
    assert manifest["platform_tag"] == str(compiled.host_platform())
    assert manifest["platform"]["machine"] in compiled.BASELINE_CPU
    rows = _rows(model)
    np.testing.assert_array_equal(_acceptance(loaded).score(rows), _acceptance(model).score(rows))
    # A loaded model saved again (the service's local cache) still ships the library.
    again = load_local(save_local(loaded, tmp_path / "cache"))
    assert again.trees is not None
    assert again.trees.compiled


def test_platform_mismatch_falls_back_to_the_booster_with_a_log_line(
    model: PolkuModel, bundle: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(compiled, "host_platform", lambda: PlatformTag("linux", "aarch64", "generic"))
    with caplog.at_level(logging.WARNING, logger="models.compiled"):
        loaded = load_local(bundle)
    engine = loaded.trees
    assert engine is not None
    assert engine.fallback
    assert not engine.compiled
    assert "platform mismatch" in engine.detail
    assert any(COMPILED_LOG in r.getMessage() and "platform mismatch" in r.getMessage() for r in caplog.records)
    rows = _rows(model)
    np.testing.assert_array_equal(_acceptance(loaded).score(rows), _acceptance(model).predict_booster(rows))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("flip_library", "corrupt"),
        ("garbage_library_with_its_hash", "cannot be loaded"),
        ("missing_library", "is missing"),
        ("corrupt_manifest", "corrupt"),
        ("other_booster", "another booster"),
    ],
)
def test_damaged_library_falls_back_and_never_crashes(
    model: PolkuModel, bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, reason: str
) -> None:
    root, cdir = _copy(bundle, tmp_path)
    lib, manifest_path = cdir / LIBRARY_FILE, cdir / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    if damage == "flip_library":
        data = bytearray(lib.read_bytes())
        data[len(data) // 2] ^= 0xFF
        lib.write_bytes(bytes(data))
    elif damage == "garbage_library_with_its_hash":
        garbage = b"\x7fELF" + b"\x00" * 60 + b"not really a shared library"
        lib.write_bytes(garbage)
        manifest["library_sha256"] = compiled._sha256(garbage)
        manifest_path.write_text(json.dumps(manifest))
    elif damage == "missing_library":
        lib.unlink()
    elif damage == "corrupt_manifest":
        manifest_path.write_text("{ not json")
    else:
        manifest["booster_sha256"] = "0" * 64
        manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="models.compiled"):
        loaded = load_local(root)
    engine = loaded.trees
    assert engine is not None, damage
    assert engine.fallback, damage
    assert reason in engine.detail
    assert any(COMPILED_LOG in r.getMessage() for r in caplog.records)
    rows = _rows(model)
    np.testing.assert_array_equal(_acceptance(loaded).score(rows), _acceptance(model).predict_booster(rows))


def test_a_model_without_a_library_uses_the_booster_quietly(bundle: Path, tmp_path: Path) -> None:
    root, cdir = _copy(bundle, tmp_path)
    shutil.rmtree(cdir)
    engine = load_local(root).trees
    assert engine is not None
    assert not engine.compiled
    assert not engine.shipped
    assert not engine.fallback


def test_mlflow_round_trip_ships_the_library_in_the_pyfunc(model: PolkuModel, tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("polku-compiled", artifact_location=(tmp_path / "artifacts").as_uri())
    items, clients = tiny_catalogue(), tiny_clients()
    with mlflow.start_run(experiment_id=exp):
        example = make_input_example(clients, items)
        info = log_polku_model(
            model, registered_model_name="polku-compiled-test", input_example=example, compiled_trees=True
        )
    libraries = list((tmp_path / "artifacts").rglob(f"{COMPILED_DIR}/{LIBRARY_FILE}"))
    assert len(libraries) == 1
    assert json.loads((libraries[0].parent / MANIFEST_FILE).read_text())["platform_tag"] == str(
        compiled.host_platform()
    )

    loaded = load_polku_model("models:/polku-compiled-test/1")
    assert loaded.trees is not None
    assert loaded.trees.compiled
    frame = make_input_example(clients, items, n=len(items))
    got = predict_frame(loaded, frame)["score"].to_numpy()
    inner = _acceptance(model)
    saved, inner.compiled_ = inner.compiled_, None  # the same model scored by the booster
    try:
        want = predict_frame(model, frame)["score"].to_numpy()
    finally:
        inner.compiled_ = saved
    assert np.max(np.abs(got - want)) <= TOLERANCE
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(frame)["score"]), got, rtol=0, atol=TOLERANCE)


def test_registration_without_compiled_trees_when_switched_off(tmp_path: Path) -> None:
    import mlflow

    assert not compiled.should_compile("0")
    assert not compiled.should_compile("off")
    assert compiled.should_compile("1")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("polku-uncompiled", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):  # POLKU_COMPILE_TREES=0 in the test session (tests/conftest.py)
        info = log_polku_model(_model(), registered_model_name=None)
    assert not list((tmp_path / "artifacts").rglob(COMPILED_DIR))
    engine = load_polku_model(info.model_uri).trees
    assert engine is not None
    assert not engine.compiled
    assert not engine.fallback


def test_service_exposes_the_tree_engine_in_metrics_and_readiness(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled_model = load_local(bundle)
    monkeypatch.setattr(compiled, "host_platform", lambda: PlatformTag("linux", "aarch64", "generic"))
    mismatched = load_local(bundle)
    for served, gauge, fallback in ((compiled_model, 1.0, 0.0), (mismatched, 0.0, 1.0)):
        settings = make_settings(f"sqlite:///{tmp_path / f'{gauge}.db'}", tmp_path / f"data-{gauge}")
        holder = ModelHolder(settings, registry_loader=registry_from({"model": served, "version": "3"}))
        with TestClient(create_app(settings, model_holder=holder)) as c:
            ready = c.get("/readyz").json()
            admin = {"Authorization": f"Bearer {mint_token(settings, role='admin', centre=None)}"}
            text = c.get("/metrics", headers=admin).text
        assert f"polku_model_trees_compiled {gauge}" in text
        assert f"polku_model_trees_fallback {fallback}" in text
        if fallback:
            assert ready["status"] == "degraded"
            assert "compiled trees not used" in ready["reason"]
            assert "platform mismatch" in ready["reason"]
        else:
            assert ready["status"] == "ok", ready
