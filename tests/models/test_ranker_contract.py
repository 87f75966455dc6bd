"""One contract for every ranker, the oracle included: fits on a tiny world, one finite score per candidate,
deterministic under a fixed seed, identical after save and load, and an empty candidate list gives an empty result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.config import TrainConfig
from training.datasets import TrainingData, build_training_data, cohort_reference_date
from training.world import World, generate_world

RANKERS = ("lightgbm", "outcome_lightgbm", "points", "popularity", "oracle")
CONFIG = TrainConfig(num_boost_round=30, early_stopping_rounds=10, min_group_size=5, seed=3)


@dataclass(frozen=True)
class Candidates:
    """One test client's eligible items, as ids and as feature rows."""

    client_id: str
    opportunity_ids: list[str]
    X: np.ndarray


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(n_clients=300, seed=4)


@pytest.fixture(scope="module")
def data(world: World) -> TrainingData:
    return build_training_data(world, CONFIG)


@pytest.fixture(scope="module")
def candidates(world: World, data: TrainingData) -> Candidates:
    from features.eligibility import EligibilityEvaluator

    evaluator = EligibilityEvaluator(world.opportunities)
    test_ids = set(data.split.test_client_ids)

    def eligible(c: Any) -> np.ndarray:
        return evaluator.evaluate(c, cohort_reference_date(world.cohort_of[c.client_id])).eligible_indices

    client = max((c for c in world.clients if c.client_id in test_ids), key=lambda c: eligible(c).size)
    on = cohort_reference_date(world.cohort_of[client.client_id])
    idx = eligible(client)
    items = data.featurizer.encode_items(world.opportunities)
    X = data.featurizer.transform_encoded(data.featurizer.encode_client(client), items, idx, on)
    return Candidates(client.client_id, [world.opportunities[int(i)].opportunity_id for i in idx], X)


def _fit(name: str, world: World, data: TrainingData) -> Any:
    from models.baselines import PointsRanker, PopularityRanker
    from models.rankers import LightGBMRanker
    from training.oracle import OracleRanker
    from training.train import fit_ranker

    names = list(data.train.feature_names)
    if name == "lightgbm":
        return LightGBMRanker(num_boost_round=20, params={"min_data_in_leaf": 10, "num_threads": 1, "seed": 3}).fit(
            data.train.X, data.train.y, data.train.query_ids, feature_names=names
        )
    if name == "outcome_lightgbm":
        return fit_ranker(data, CONFIG).ranker
    if name == "points":
        return PointsRanker().fit(data.train.X, data.train.y, data.train.query_ids, feature_names=names)
    if name == "popularity":
        return PopularityRanker().fit(data.train.X, data.train.y, data.train.query_ids, feature_names=names)
    return OracleRanker(world.truth)


def _scorer(ranker: Any, cands: Candidates) -> Callable[[Candidates], np.ndarray]:
    from training.oracle import OracleRanker

    if isinstance(ranker, OracleRanker):
        return lambda c: ranker.score_pairs([c.client_id] * len(c.opportunity_ids), c.opportunity_ids)
    return lambda c: ranker.score(c.X)


@pytest.fixture(scope="module", params=RANKERS)
def fitted(request: pytest.FixtureRequest, world: World, data: TrainingData) -> tuple[str, Any]:
    return request.param, _fit(request.param, world, data)


def test_one_finite_score_per_candidate(fitted: tuple[str, Any], candidates: Candidates) -> None:
    _, ranker = fitted
    scores = np.asarray(_scorer(ranker, candidates)(candidates))
    assert scores.shape == (len(candidates.opportunity_ids),)
    assert len(candidates.opportunity_ids) > 1
    assert np.all(np.isfinite(scores))


def test_deterministic_under_a_fixed_seed(
    fitted: tuple[str, Any], world: World, data: TrainingData, candidates: Candidates
) -> None:
    name, ranker = fitted
    again = _fit(name, world, build_training_data(world, CONFIG) if name == "outcome_lightgbm" else data)
    np.testing.assert_array_equal(_scorer(again, candidates)(candidates), _scorer(ranker, candidates)(candidates))


def test_save_and_load_give_identical_scores(
    fitted: tuple[str, Any], world: World, candidates: Candidates, tmp_path: Path
) -> None:
    from models.rankers import Ranker
    from training.oracle import OracleRanker

    _, ranker = fitted
    if isinstance(ranker, OracleRanker):  # the oracle is the world's truth: it is saved and loaded with the world
        world.save(tmp_path / "world")
        loaded: Any = OracleRanker(World.load(tmp_path / "world").truth)
    else:
        ranker.save(tmp_path / "ranker")
        loaded = Ranker.load(tmp_path / "ranker")
        assert type(loaded) is type(ranker)
    np.testing.assert_array_equal(_scorer(loaded, candidates)(candidates), _scorer(ranker, candidates)(candidates))


def test_empty_candidate_list_gives_an_empty_result(fitted: tuple[str, Any], candidates: Candidates) -> None:
    _, ranker = fitted
    empty = Candidates(candidates.client_id, [], candidates.X[:0])
    assert np.asarray(_scorer(ranker, empty)(empty)).size == 0
