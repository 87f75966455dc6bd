"""The morning simulation: seats fill, full items cannot be taken, and prices are what separates the policies."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from features.pairs import PairFeaturizer
from models.package import build_fallback_model
from training.morning import POLICIES, MorningConfig, _Lists, _morning, morning_table, simulate_morning
from training.world.generate import World


@pytest.fixture(scope="module")
def world() -> World:
    from training.world import generate_world

    return generate_world(n_clients=300, seed=3)


def test_a_full_item_cannot_be_taken_and_counts_as_a_full_first_suggestion() -> None:
    # two clients (one kind each used: agents 0 and 3), both see item 0 first and item 1 second; item 0 has 1 seat
    items = np.full((6, 10), -1, dtype=np.int64)
    items[0, :2] = [0, 1]
    items[3, :2] = [0, 1]
    lists = _Lists(items, np.zeros((6, 10)))
    taste = {(0, 0): 5.0, (0, 1): 1.0, (3, 0): 5.0, (3, 1): 1.0}
    utility = {(0, 0): 2.0, (0, 1): 1.0, (3, 0): 2.0, (3, 1): 1.0}
    no_noise = np.zeros((6, 3))
    none = np.full(3, -50.0)  # nobody declines
    total, full_first, shown, taken = _morning(
        lists, np.array([1.0, 5.0]), utility, taste, none, 2, np.array([0, 1]), no_noise
    )
    assert (shown, taken, full_first) == (2, 2, 1)
    assert total == pytest.approx(3.0)  # the first arrival gets item 0, the second item 1


def test_without_scarce_seats_prices_are_zero_and_both_policies_agree(world: World) -> None:
    roomy = replace(world, opportunities=[o.model_copy(update={"seats": 10_000}) for o in world.opportunities])
    model = build_fallback_model(PairFeaturizer())
    result = simulate_morning(roomy, model, MorningConfig(repeats=1), centres=["helsinki"])
    assert result["centres"][0]["priced_items"] == 0
    assert result["plain"] == result["congestion_aware"]
    assert result["plain"]["full_first_share"] == 0.0
    assert result["ceiling"]["plain"] == result["ceiling"]["congestion_aware"]  # no prices on true utility either


def test_report_has_both_policies_metrics_in_range_and_a_table(world: World) -> None:
    model = build_fallback_model(PairFeaturizer())
    result = simulate_morning(world, model, MorningConfig(repeats=2))
    for policy in POLICIES:
        block = result[policy]
        assert 0.0 <= block["full_first_share"] <= 1.0
        assert 0.0 <= block["congestion_at_10"] <= 1.0
        assert 0.0 <= block["coverage_at_10"] <= 1.0
        assert 0.0 <= block["ndcg_at_10"] <= 1.0
    assert set(result["met"]) == {
        "full_first_share_halves",
        "congestion_falls_30pct",
        "utility_rises_5pct",
        "ndcg_loss_at_most_0_02",
    }
    ceiling = result["ceiling"]
    assert set(ceiling) == {*POLICIES, "change"}
    # ranking by true utility is the best list there is (lists without any relevant item count 0 in both)
    assert ceiling["plain"]["ndcg_at_10"] > result["plain"]["ndcg_at_10"]
    json.dumps(result)  # the evaluation report stores it
    table = morning_table(result)
    assert "ceiling" in table
    assert "congestion-aware" in table
    assert "targets:" in table
