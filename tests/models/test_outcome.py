"""The outcome-aware ranker: slate calibration, item effects, route preference that does not pay off, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.pairs import FEATURE_NAMES
from features.records import ROUTES
from models.explain import outcome_reasons
from models.outcome import OutcomeAwareRanker
from models.rankers import Ranker
from models.slates import fit_slate_logit
from training.item_effects import leave_one_out, prior_strength, shrunk_log_ratio

NAMES = list(FEATURE_NAMES)


def _simulate_slates(rng: np.random.Generator, n_slates: int, truth: dict[str, float]) -> dict[str, np.ndarray]:
    size = 6
    f = rng.normal(size=(n_slates, size))
    pos = np.tile(np.arange(size), (n_slates, 1)).astype(float)
    show = rng.normal(size=(n_slates, size))
    kind = rng.integers(0, 3, n_slates)
    none = np.array([truth["none0"], truth["none1"], truth["none2"]])
    s = truth["scale"] * f + truth["pos"] * pos + truth["show"] * show
    w = np.c_[np.exp(s), np.exp(none[kind])]
    p = w / w.sum(axis=1, keepdims=True)
    choice = np.array([rng.choice(size + 1, p=row) for row in p])
    accepted = np.zeros((n_slates, size), dtype=bool)
    took = choice < size
    accepted[np.flatnonzero(took), choice[took]] = True
    slate = np.repeat(np.arange(n_slates), size)
    return {
        "f": f.ravel(),
        "pos": pos.ravel(),
        "show": show.ravel(),
        "slate": slate,
        "kind": np.repeat(kind, size),
        "accepted": accepted.ravel(),
    }


def test_slate_logit_recovers_its_parameters() -> None:
    truth = {"scale": 1.2, "pos": -0.1, "show": 0.4, "none0": 1.0, "none1": 3.0, "none2": 2.0}
    d = _simulate_slates(np.random.default_rng(1), 6000, truth)
    fit = fit_slate_logit(d["f"], d["pos"], d["show"], d["slate"], d["kind"], d["accepted"])
    assert fit.scale == pytest.approx(1.2, abs=0.08)
    assert fit.position_coef == pytest.approx(-0.1, abs=0.04)
    assert fit.show_coef == pytest.approx(0.4, abs=0.06)
    assert fit.none == pytest.approx((1.0, 3.0, 2.0), abs=0.25)
    p = fit.probabilities(fit.utilities(d["f"], d["pos"], d["show"]), d["slate"], d["kind"])
    per_slate = np.bincount(d["slate"], weights=p)
    assert np.all(per_slate < 1.0)
    assert per_slate.mean() == pytest.approx(d["accepted"].sum() / (d["slate"].max() + 1), abs=0.02)


def test_prior_strength_is_large_without_item_effects_and_small_with_them() -> None:
    rng = np.random.default_rng(2)
    expected = rng.uniform(2, 30, 400)
    plain = rng.poisson(expected)
    assert prior_strength(plain, expected) >= 100
    effect = rng.normal(0, 0.6, 400)
    varied = rng.poisson(expected * np.exp(effect))
    assert prior_strength(varied, expected) < 10
    est, _ = shrunk_log_ratio(varied, expected, np.zeros(400))
    assert np.corrcoef(est, effect)[0, 1] > 0.6


def test_items_without_history_get_their_prior_and_leave_one_out_removes_the_row() -> None:
    observed = np.array([0.0, 10.0, 3.0])
    expected = np.array([0.0, 5.0, 3.0])
    effect, strength = shrunk_log_ratio(observed, expected, np.zeros(3))
    assert effect[0] == 0.0
    assert effect[1] > 0.0
    loo = leave_one_out(observed, expected, strength, [1, 1], np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    assert loo[0] < effect[1]
    assert loo[1] > loo[0]


def _synthetic(
    rng: np.random.Generator, n_queries: int = 600, size: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training kind only; clients prefer degree items, which start, complete and employ no better."""
    n = n_queries * size
    X = np.zeros((n, len(NAMES)), dtype=np.float32)
    fit_col = NAMES.index("ess_cov")
    X[:, fit_col] = rng.uniform(0, 1, n)
    X[:, NAMES.index("kind_training")] = 1.0
    route = rng.integers(0, len(ROUTES), n)
    X[np.arange(n), [NAMES.index(f"route_{r}") for r in np.array(ROUTES)[route]]] = 1.0
    degree = route == ROUTES.index("degree")
    u = 3.0 * X[:, fit_col] - 1.5
    accept_logit = u + 2.5 * degree - 2.0
    accepted = rng.random(n) < 1 / (1 + np.exp(-accept_logit))
    started = accepted & (rng.random(n) < 1 / (1 + np.exp(-(0.5 + u))))
    completed = started & (rng.random(n) < 1 / (1 + np.exp(-(0.3 + u))))
    employed = completed & (rng.random(n) < 1 / (1 + np.exp(-(-1.0 + 0.5 * u))))
    y = accepted.astype(int) + started + completed + employed
    return X, y.astype(np.int32), np.repeat(np.arange(n_queries), size)


@pytest.fixture(scope="module")
def fitted() -> tuple[OutcomeAwareRanker, np.ndarray]:
    X, y, q = _synthetic(np.random.default_rng(3))
    ranker = OutcomeAwareRanker(num_boost_round=60, params={"min_data_in_leaf": 20, "num_threads": 1})
    ranker.fit(X, y, q, feature_names=NAMES)
    return ranker, X


def test_route_preference_that_does_not_pay_off_is_taken_out(fitted: tuple[OutcomeAwareRanker, np.ndarray]) -> None:
    ranker, X = fitted
    offsets = dict(zip(ROUTES, ranker.stages_["route_offset"], strict=True))
    others = [v for r, v in offsets.items() if r != "degree"]
    assert offsets["degree"] < -0.5
    assert offsets["degree"] < min(others)
    # Equal fit: a degree item is accepted far more often than a workshop, and worth hardly more.
    row = X[:2].copy()
    for r in ROUTES:
        row[:, NAMES.index(f"route_{r}")] = 0.0
    row[:, NAMES.index("ess_cov")] = 0.6
    row[0, NAMES.index("route_degree")] = 1.0
    row[1, NAMES.index("route_workshop")] = 1.0
    out = ranker.outcomes(row)
    acceptance_gap = np.log(out["p_accept"][0] / (1 - out["p_accept"][0])) - np.log(
        out["p_accept"][1] / (1 - out["p_accept"][1])
    )
    assert acceptance_gap > 1.5  # clients prefer the degree item...
    assert out["utility"][0] - out["utility"][1] < 0.4 * acceptance_gap  # ...most of which is not credited


def test_outcomes_are_probabilities_and_score_combines_them(fitted: tuple[OutcomeAwareRanker, np.ndarray]) -> None:
    ranker, X = fitted
    out = ranker.outcomes(X[:200])
    for key in ("p_accept", "p_start", "p_complete", "p_employ", "employ_base"):
        assert np.all((out[key] >= 0) & (out[key] <= 1)), key
    w = ranker.weights
    value = out["p_start"] * (
        w["start"] + out["p_complete"] * (w["complete"] + w["employ"] * (out["p_employ"] - out["employ_base"]))
    )
    np.testing.assert_allclose(out["expected_outcome"], value)
    np.testing.assert_allclose(ranker.score(X[:200]), value + w["accept"] * out["p_accept"])
    # More fit, more expected outcome (same route and kind).
    better = X[:50].copy()
    better[:, NAMES.index("ess_cov")] += 0.5
    assert np.mean(ranker.outcomes(better)["expected_outcome"] >= out["expected_outcome"][:50] - 1e-9) > 0.9


def test_contributions_sum_to_the_score(fitted: tuple[OutcomeAwareRanker, np.ndarray]) -> None:
    ranker, X = fitted
    contrib = ranker.contributions(X[:30])
    assert contrib.shape == (30, len(NAMES) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), ranker.score(X[:30]), atol=1e-9)
    assert ranker.contributions(X[:0]).shape == (0, len(NAMES) + 1)
    assert ranker.score(X[:0]).size == 0


def test_save_and_load_give_identical_scores_and_outcomes(
    fitted: tuple[OutcomeAwareRanker, np.ndarray], tmp_path: Path
) -> None:
    ranker, X = fitted
    ranker.save(tmp_path / "r")
    loaded = Ranker.load(tmp_path / "r")
    assert isinstance(loaded, OutcomeAwareRanker)
    np.testing.assert_array_equal(loaded.score(X[:100]), ranker.score(X[:100]))
    for key, values in ranker.outcomes(X[:100]).items():
        np.testing.assert_array_equal(loaded.outcomes(X[:100])[key], values)


def test_unknown_value_weight_is_refused() -> None:
    from models.rankers import RankerError

    with pytest.raises(RankerError, match="weights"):
        OutcomeAwareRanker(weights={"happiness": 1.0})


def test_outcome_reasons_name_the_outcome_terms() -> None:
    reference = {"p_accept": 0.1, "p_start": 0.6, "p_complete": 0.4}
    good = {
        "p_accept": 0.3,
        "p_start": 0.9,
        "p_complete": 0.8,
        "p_employ": 0.5,
        "employ_base": 0.3,
        "item_history": 0.0,
    }
    codes = [r.code for r in outcome_reasons(good, reference, "fi")]
    assert codes == ["often_completed", "leads_to_work", "often_chosen", "new_item"]
    texts = [r.text for r in outcome_reasons(good, reference, "fi")]
    assert texts[0].startswith("Usein suoritettu loppuun")
    plain = {
        "p_accept": 0.1,
        "p_start": 0.6,
        "p_complete": 0.6,
        "p_employ": 0.3,
        "employ_base": 0.3,
        "item_history": 40.0,
    }
    assert outcome_reasons(plain, reference, "en") == []
