"""Serving policies: the deterministic top k, Plackett–Luce exploration below a fixed top, exact propensities."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.exploration import Deterministic, PlackettLuce, policy_from_setting, slate_probability

SCORES = np.array([3.0, 2.5, 2.0, 1.0, 0.9, 0.5, 0.1, -1.0])


def test_deterministic_is_the_top_k_with_propensity_one() -> None:
    slate = Deterministic().select(SCORES[::-1], 3)
    assert list(slate.order) == [7, 6, 5]
    assert list(slate.propensities) == [1.0, 1.0, 1.0]
    assert not slate.explored


def test_plackett_luce_keeps_the_top_three_and_is_reproducible() -> None:
    policy = PlackettLuce(1.0)
    a, b = policy.select(SCORES, 6, seed=11), policy.select(SCORES, 6, seed=11)
    assert list(a.order) == list(b.order)
    assert list(a.order[:3]) == [0, 1, 2]
    assert len(set(a.order.tolist())) == 6
    assert any(policy.select(SCORES, 6, seed=s).explored for s in range(20))


def test_slate_probabilities_sum_to_one_over_every_possible_slate() -> None:
    """Exactness: the product of the logged conditional propensities is a probability distribution over slates."""
    policy = PlackettLuce(0.7)
    scores = SCORES[:6]
    total = 0.0
    for tail in itertools.permutations(range(3, 6), 2):
        order = [0, 1, 2, *tail]
        total += slate_probability(policy.conditional_propensities(scores, order))
    assert total == pytest.approx(1.0, abs=1e-12)


def test_logged_propensity_matches_the_sampling_frequency() -> None:
    policy = PlackettLuce(0.5)
    slate = policy.select(SCORES, 6, seed=7)
    assert np.allclose(policy.conditional_propensities(SCORES, slate.order), slate.propensities)
    w = np.exp((SCORES[3:] - SCORES.max()) / 0.5)
    draws = np.array([policy.select(SCORES, 4, seed=s).order[3] for s in range(4000)])
    freq = np.bincount(draws, minlength=8)[3:] / draws.size
    assert np.allclose(freq, w / w.sum(), atol=0.03)


def test_an_order_the_policy_cannot_produce_has_propensity_zero() -> None:
    assert PlackettLuce(1.0).conditional_propensities(SCORES, [1, 0, 2, 3])[0] == 0.0


@pytest.mark.parametrize("value", ["hot", "-1", "nan", "inf"])
def test_setting_refuses_anything_but_off_or_a_positive_temperature(value: str) -> None:
    with pytest.raises(ValueError, match="POLKU_EXPLORATION"):
        policy_from_setting(value)
    assert policy_from_setting("off").name == "deterministic"
    assert policy_from_setting("0.3").name == "plackett-luce(t=0.3,top=3)"


def test_short_lists_and_empty_lists() -> None:
    policy = PlackettLuce(1.0)
    assert policy.select([], 5).order.size == 0
    slate = policy.select([1.0, 2.0], 5)
    assert list(slate.order) == [1, 0]
    assert not slate.explored


def test_deterministic_propensities_follow_the_score_order_until_the_first_departure() -> None:
    policy = Deterministic()
    assert list(policy.conditional_propensities(SCORES, [0, 1, 2])) == [1.0, 1.0, 1.0]
    assert list(policy.conditional_propensities(SCORES, [0, 2, 1])) == [1.0, 0.0, 0.0]


def test_replay_gives_zero_from_an_item_the_target_never_scored() -> None:
    from models.replay import target_propensities

    pool = np.array([10, 11, 12, 13, 14], dtype=np.int64)
    scores = np.array([3.0, 2.0, 1.0, 0.5, 0.1])
    policy = PlackettLuce(1.0)
    inside = target_propensities(pool, scores, [10, 11, 12, 14], policy)
    assert np.allclose(inside, policy.conditional_propensities(scores, [0, 1, 2, 4]))
    assert list(target_propensities(pool, scores, [10, 99, 12], policy)) == [1.0, 0.0, 0.0]
