"""Off-policy estimators on synthetic slate logs whose true value is known exactly (enumeration)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from models.exploration import PlackettLuce
from training.ope import LoggedSlates, cascade_weights, dcg_weights, estimate, estimate_all, ips_training_weights

THETA = np.array([0.9, 0.2, 0.6, 0.1, 0.5])  # reward probability per item (independent of position)
LOGGING_SCORES = np.array([0.5, 0.4, 0.3, 0.2, 0.1])
TARGET_SCORES = np.array([2.0, -1.0, 1.5, -1.0, 0.5])
LOGGING, TARGET = PlackettLuce(1.0, fixed_top=0), PlackettLuce(0.5, fixed_top=0)
K = 3


def _true_value() -> float:
    total = 0.0
    for order in itertools.permutations(range(5), K):
        p = float(np.prod(TARGET.conditional_propensities(TARGET_SCORES, order)))
        total += p * float(np.sum(dcg_weights(np.arange(1, K + 1)) * THETA[list(order)]))
    return total


def _logs(n: int, seed: int, *, model_error: float = 0.0) -> LoggedSlates:
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {k: [] for k in ("q", "pos", "mu", "pi", "r", "rhat", "qhat")}
    rhat_item = np.clip(THETA + model_error, 0, 1)
    for q in range(n):
        slate = LOGGING.select(LOGGING_SCORES, K, seed=int(rng.integers(2**32)))
        pi = TARGET.conditional_propensities(TARGET_SCORES, slate.order)
        w = TARGET.weights(TARGET_SCORES)
        alive = np.ones(5, dtype=bool)
        for j, item in enumerate(slate.order):
            p_target = np.where(alive, w, 0.0) / w[alive].sum()
            rows["q"].append(q)
            rows["pos"].append(j + 1)
            rows["mu"].append(slate.propensities[j])
            rows["pi"].append(pi[j])
            rows["r"].append(float(rng.random() < THETA[item]))
            rows["rhat"].append(rhat_item[item])
            rows["qhat"].append(float(np.sum(p_target * rhat_item)))
            alive[item] = False
    return LoggedSlates(
        query=np.array(rows["q"], dtype=np.int64),
        position=np.array(rows["pos"], dtype=np.int64),
        logging_propensity=np.array(rows["mu"]),
        target_propensity=np.array(rows["pi"]),
        reward=np.array(rows["r"]),
        reward_hat=np.array(rows["rhat"]),
        target_reward_hat=np.array(rows["qhat"]),
    )


def test_ips_is_unbiased_over_many_logs() -> None:
    truth = _true_value()
    values = [estimate(_logs(1000, seed), "ips", clip=np.inf, samples=1).value for seed in range(20)]
    assert np.mean(values) == pytest.approx(truth, abs=0.02)


def test_snips_and_dr_are_close_on_one_large_log_and_intervals_cover() -> None:
    truth = _true_value()
    found = estimate_all(_logs(3000, 1), samples=200)
    for method in ("ips", "snips", "dr"):
        est = found[method]
        assert est.value == pytest.approx(truth, abs=0.05), method
        assert est.low <= truth <= est.high, method
        assert est.support == 1.0
    assert found["dr"].high - found["dr"].low < found["ips"].high - found["ips"].low  # the model cuts variance


def test_dr_stays_unbiased_with_a_wrong_reward_model() -> None:
    truth = _true_value()
    values = [estimate(_logs(500, seed, model_error=0.3), "dr", clip=np.inf, samples=1).value for seed in range(20)]
    assert np.mean(values) == pytest.approx(truth, abs=0.04)  # two standard errors of this mean


def test_cascade_weights_multiply_down_the_slate_and_clip() -> None:
    logs = LoggedSlates(
        query=np.array([0, 0, 0, 1]),
        position=np.array([1, 2, 3, 1]),
        logging_propensity=np.array([0.5, 0.5, 0.5, 1.0]),
        target_propensity=np.array([1.0, 0.0, 1.0, 1.0]),
        reward=np.zeros(4),
    )
    assert list(cascade_weights(logs)) == [2.0, 0.0, 0.0, 1.0]
    assert estimate(logs, "ips", samples=10).support == 0.5
    assert cascade_weights(logs, clip=1.5)[0] == 1.5


def test_training_weights_are_clipped_and_self_normalised() -> None:
    w = ips_training_weights([1.0, 0.5, 0.001])
    assert w.mean() == pytest.approx(1.0)
    assert w[2] / w[0] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="> 0"):
        ips_training_weights([0.0])


def _true_value_of(values: np.ndarray) -> float:
    total = 0.0
    for order in itertools.permutations(range(5), K):
        p = float(np.prod(TARGET.conditional_propensities(TARGET_SCORES, order)))
        total += p * float(np.sum(dcg_weights(np.arange(1, K + 1)) * values[list(order)]))
    return total


@pytest.mark.parametrize("model_error", [0.0, 0.3])
def test_dr_with_the_target_slates_model_value_is_unbiased(model_error: float) -> None:
    truth = _true_value()
    dm = _true_value_of(np.clip(THETA + model_error, 0, 1))  # the model's value of the target's slates
    dr, ips = [], []
    for seed in range(20):
        logs = _logs(500, seed, model_error=model_error)
        dr.append(estimate(replace(logs, target_dm=np.full(500, dm)), "dr", clip=np.inf, samples=1).value)
        ips.append(estimate(logs, "ips", clip=np.inf, samples=1).value)
    assert np.mean(dr) == pytest.approx(truth, abs=0.03)
    if model_error == 0.0:
        assert np.std(dr) < np.std(ips)  # a right model removes most of the variance
