"""PolkuModel packaging: ranking API, local bundles, MLflow log/load parity, corrupt artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.pairs import PairBatch, PairFeaturizer
from features.records import ClientProfile, Opportunity
from models.package import ModelLoadError, PolkuModel, build_fallback_model
from models.packaging import (
    load_local,
    load_polku_model,
    log_polku_model,
    make_input_example,
    predict_frame,
    save_local,
)
from models.rankers import LightGBMRanker
from tests.factories import REFERENCE_DATE, make_client, make_opportunity, make_training, occupation_skills


def _catalogue() -> list[Opportunity]:
    essential, optional = occupation_skills()
    items: list[Opportunity] = []
    for i in range(12):
        items.append(
            make_opportunity(
                required_skills={"essential": essential[i % 5 : i % 5 + 4], "optional": optional[:2]},
                min_language={"fi": ["A1.1", "A2.1", "B1.1"][i % 3]},
                seats=1 + i,
            )
        )
    items += [make_training(), make_training(route="language", completion={"language_reached": {"fi": "A2.2"}})]
    return items


def _clients(n: int = 16) -> list[ClientProfile]:
    essential, _ = occupation_skills()
    levels = ["A1.1", "A2.1", "B1.1", "B2.1"]
    return [
        make_client(
            skills=[{"uri": u, "level": 1 + (i + j) % 4} for j, u in enumerate(essential[i % 6 : i % 6 + 3])],
            languages=[{"language": "fi", "level": levels[i % 4]}],
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def model() -> PolkuModel:
    clients, items = _clients(), _catalogue()
    ci, oi = np.meshgrid(np.arange(len(clients)), np.arange(len(items)), indexing="ij")
    batch = PairBatch(clients, items, ci.ravel(), oi.ravel())
    featurizer = PairFeaturizer(reference_date=REFERENCE_DATE).fit(
        batch, acceptance={items[0].opportunity_id: (5, 10), items[1].opportunity_id: (0, 10)}
    )
    X = featurizer.transform(batch)
    names = list(featurizer.get_feature_names_out())
    signal = X[:, names.index("ess_cov")] - 0.3 * X[:, names.index("lang_gap_best")]
    y = np.digitize(signal, np.quantile(signal, [0.5, 0.8, 0.95]))
    ranker = LightGBMRanker(num_boost_round=15, params={"min_data_in_leaf": 5, "num_threads": 1})
    ranker.fit(X, y, batch.client_idx, feature_names=names)
    return PolkuModel(featurizer, ranker, {"name": "polku-ranker", "version": "test"})


def test_rank_returns_top_k_with_contributions(model: PolkuModel) -> None:
    items = _catalogue()
    enc_items = model.encode_items(items)
    client = _clients(3)[2]
    all_idx = np.arange(len(items))
    result = model.rank(client, enc_items, all_idx, k=5, reference_date=REFERENCE_DATE)
    full = model.score(client, enc_items, all_idx, REFERENCE_DATE)
    assert result.indices.tolist() == np.argsort(-full, kind="stable")[:5].tolist()
    np.testing.assert_allclose(result.scores, full[result.indices])
    assert result.contributions.shape == (5, len(model.feature_names) + 1)
    np.testing.assert_allclose(result.contributions.sum(axis=1), result.scores, atol=1e-6)
    empty = model.rank(client, enc_items, np.zeros(0, dtype=np.int64), k=5)
    assert empty.indices.size == 0


def test_rank_groups_equals_rank_per_group(model: PolkuModel) -> None:
    items = _catalogue()
    enc_items = model.encode_items(items)
    client = model.encode_client(_clients(3)[1])
    n = len(items)
    groups = [np.arange(0, n, 2), np.zeros(0, dtype=np.int64), np.arange(1, n, 2)]
    model.first_stage_k = 3
    try:
        got = model.rank_groups(client, enc_items, groups, k=2, reference_date=REFERENCE_DATE)
        want = [model.rank(client, enc_items, g, k=2, reference_date=REFERENCE_DATE) for g in groups]
    finally:
        model.first_stage_k = 300
    for a, b in zip(got, want, strict=True):
        assert a.indices.tolist() == b.indices.tolist()
        assert a.n_scored == b.n_scored
        np.testing.assert_allclose(a.scores, b.scores)
        np.testing.assert_allclose(a.contributions, b.contributions, atol=1e-9)


def test_two_stage_cuts_long_candidate_lists(model: PolkuModel) -> None:
    items = _catalogue()
    enc_items = model.encode_items(items)
    model.first_stage_k = 4
    try:
        result = model.rank(_clients(1)[0], enc_items, np.arange(len(items)), k=10, reference_date=REFERENCE_DATE)
    finally:
        model.first_stage_k = 300
    assert result.n_scored == 4
    assert result.indices.size == 4


def test_local_bundle_round_trip(model: PolkuModel, tmp_path: Path) -> None:
    items, clients = _catalogue(), _clients(4)
    save_local(model, tmp_path / "cache")
    save_local(model, tmp_path / "cache")  # replacing an existing bundle works
    loaded = load_local(tmp_path / "cache")
    assert loaded.metadata["version"] == "test"
    frame = make_input_example(clients, items, n=len(items))
    np.testing.assert_array_equal(predict_frame(loaded, frame)["score"], predict_frame(model, frame)["score"])
    assert not list((tmp_path / "cache").rglob("*.pkl"))


def test_fallback_model_is_points(model: PolkuModel) -> None:
    fallback = build_fallback_model(model.featurizer)
    assert fallback.is_fallback
    assert fallback.ranker.name == "points"
    items = _catalogue()
    result = fallback.rank(_clients(1)[0], fallback.encode_items(items), np.arange(len(items)), k=3)
    assert result.indices.size == 3


def test_mlflow_log_and_load_give_identical_scores(model: PolkuModel, tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("polku-test", artifact_location=(tmp_path / "artifacts").as_uri())
    items, clients = _catalogue(), _clients(5)
    example = make_input_example(clients, items)
    with mlflow.start_run(experiment_id=exp):
        info = log_polku_model(model, registered_model_name="polku-ranker-test", input_example=example)
    assert info.registered_model_version is not None

    loaded = load_polku_model("models:/polku-ranker-test/1")
    frame = make_input_example(clients, items, n=len(items))
    expected = predict_frame(model, frame)["score"].to_numpy()
    np.testing.assert_array_equal(predict_frame(loaded, frame)["score"].to_numpy(), expected)

    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(frame)["score"]), expected)

    # Corrupt the booster in the artifact store: loading must fail with a clear error, not a crash later.
    boosters = list((tmp_path / "artifacts").rglob("booster.txt"))
    assert boosters
    for path in boosters:
        path.write_text("tree\nnot a model\n")
    with pytest.raises(ModelLoadError, match="booster"):
        load_polku_model("models:/polku-ranker-test/1")
    with pytest.raises(ModelLoadError):
        load_polku_model("models:/no-such-model/1")


def test_incompatible_metadata_is_rejected(model: PolkuModel, tmp_path: Path) -> None:
    save_local(model, tmp_path / "m")
    meta = tmp_path / "m" / "metadata.json"
    meta.write_text(meta.read_text().replace(model.metadata["taxonomy_version"], "esco-0.0"))
    with pytest.raises(ModelLoadError, match="taxonomy"):
        load_local(tmp_path / "m")
    meta.write_text("{not json")
    with pytest.raises(ModelLoadError, match="metadata"):
        load_local(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="no such directory"):
        load_local(tmp_path / "missing")


def test_exploration_samples_around_the_price_adjusted_order(model: PolkuModel) -> None:
    """With prices and a sampling policy: the top places follow score − price, every shown item is a candidate,
    the propensities are the policy's for that order, and ranks by score alone come with them."""
    from models.exploration import PlackettLuce

    items = _catalogue()
    enc_items = model.encode_items(items)
    client = model.encode_client(_clients(3)[1])
    group = np.arange(len(items), dtype=np.int64)
    plain = model.rank_groups(client, enc_items, [group], k=len(items), reference_date=REFERENCE_DATE)[0]
    prices = np.zeros(len(items), dtype=np.float64)
    prices[plain.indices[0]] = 10.0  # the best item by score is heavily congested
    policy = PlackettLuce(temperature=0.5)
    got = model.rank_groups(
        client, enc_items, [group], k=5, reference_date=REFERENCE_DATE, prices=prices, policy=policy, seeds=[7]
    )[0]
    adjusted = {int(i): float(s) - prices[int(i)] for i, s in zip(plain.indices, plain.scores, strict=True)}
    best_adjusted = sorted(adjusted, key=lambda i: -adjusted[i])[: policy.fixed_top]
    assert got.indices[: policy.fixed_top].tolist() == best_adjusted
    assert int(plain.indices[0]) not in got.indices[: policy.fixed_top].tolist()
    assert set(got.indices.tolist()) <= set(group.tolist())
    assert got.propensities is not None
    assert np.all((got.propensities > 0) & (got.propensities <= 1))
    want = policy.conditional_propensities(
        np.array([adjusted[int(i)] for i in plain.indices]), [plain.indices.tolist().index(i) for i in got.indices]
    )
    np.testing.assert_allclose(got.propensities, want)
    assert got.plain_ranks is not None
    assert got.plain_ranks.tolist() == [plain.indices.tolist().index(i) + 1 for i in got.indices]
