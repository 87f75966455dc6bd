"""Reasons, gaps with remedies, exclusion texts, and multi-step paths whose steps really chain."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from features.eligibility import REASONS, EligibilityEvaluator
from features.pairs import PairFeaturizer
from features.records import ClientProfile, Opportunity
from models.completion import apply_completion, completion_gains
from models.explain import RemedyIndex, explain, gaps
from models.messages import exclusion_text
from models.package import PolkuModel, build_fallback_model
from models.paths import PathPlanner
from tests.factories import REFERENCE_DATE, make_client, make_opportunity, make_training, occupation_skills

World = tuple[ClientProfile, dict[str, Opportunity]]


@pytest.fixture(scope="module")
def world() -> World:
    essential, _ = occupation_skills()
    client = make_client(
        skills=[],
        languages=[{"language": "fi", "level": "A1.1"}],
        education=[{"isced_level": 2, "recognition": "none"}],
    )
    items = {
        "course": make_training(
            opportunity_id="fi-course-1",
            route="language",
            title={"fi": "Suomen kieli A1–B1", "en": "Finnish A1–B1"},
            min_language={},
            s2_support=False,
            required_skills={},
            intake={"continuous": False, "dates": [date(2025, 9, 15), date(2026, 1, 12)]},
            duration_weeks=12.0,
            completion={"language_reached": {"fi": "B1.1"}},
        ),
        "training": make_training(
            opportunity_id="cook-degree-1",
            min_language={"fi": "B1.1"},
            s2_support=True,
            intake={"continuous": False, "dates": [date(2025, 8, 11), date(2026, 1, 12), date(2026, 8, 10)]},
            duration_weeks=40.0,
        ),
        "vacancy": make_opportunity(
            opportunity_id="cook-job-1",
            min_language={"fi": "B1.1"},
            min_isced=3,
            required_skills={"essential": essential[:6], "optional": []},
        ),
        "other_job": make_opportunity(opportunity_id="driver-job-1", occupation={"isco": "8322"}, min_language={}),
    }
    return client, items


@pytest.fixture(scope="module")
def model() -> PolkuModel:
    return build_fallback_model(PairFeaturizer(reference_date=REFERENCE_DATE))


def test_gaps_name_missing_level_education_skills_with_remedies(world: World) -> None:
    client, items = world
    index = RemedyIndex(list(items.values()))
    found = gaps(client, items["vacancy"], index, "en")
    by_kind = {g.kind: g for g in found}
    assert by_kind["language"].need == "B1.1"
    assert by_kind["language"].have == "A1.1"
    assert by_kind["language"].remedies == ["fi-course-1"]
    assert by_kind["education"].remedies == ["cook-degree-1"]
    skill_gaps = [g for g in found if g.kind == "skill"]
    assert len(skill_gaps) == 6
    assert all(g.remedies == ["cook-degree-1"] for g in skill_gaps)
    assert all(g.label and g.label in g.text for g in skill_gaps)
    fi = gaps(client, items["vacancy"], list(items.values()), "fi")
    assert fi[0].text.startswith("Kielitaito")


def test_no_gaps_when_client_meets_everything(world: World) -> None:
    _, items = world
    essential, _ = occupation_skills()
    ready = make_client(
        skills=[{"uri": u, "level": 3} for u in essential[:6]],
        languages=[{"language": "fi", "level": "B2.1"}],
        education=[{"isced_level": 3, "recognition": "not_needed"}],
    )
    assert gaps(ready, items["vacancy"], list(items.values())) == []


def test_explain_gives_strongest_positive_reasons(model: PolkuModel, world: World) -> None:
    _, items = world
    essential, _ = occupation_skills()
    client = make_client(skills=[{"uri": u, "level": 4} for u in essential[:6]])
    vacancy = items["vacancy"]
    enc = model.encode_items([vacancy])
    result = model.rank(client, enc, np.array([0]), k=1, reference_date=REFERENCE_DATE)
    reasons = explain(model, client, vacancy, result.contributions[0], "en")
    assert reasons
    assert reasons[0].code == "skills"
    assert "100%" in reasons[0].text
    assert [r.weight for r in reasons] == sorted((r.weight for r in reasons), reverse=True)
    assert all(r.weight > 0 for r in reasons)
    sv = explain(model, client, vacancy, result.contributions[0], "sv")
    assert sv[0].text.startswith("Dina")


def test_every_exclusion_reason_has_texts() -> None:
    for reason in REASONS[1:]:
        for lang in ("fi", "sv", "en"):
            assert exclusion_text(reason, lang)


def test_path_chains_language_course_training_vacancy(model: PolkuModel, world: World) -> None:
    client, items = world
    catalogue = list(items.values())
    planner = PathPlanner(catalogue, model)
    paths = planner.plan(client, REFERENCE_DATE, max_steps=4, n_paths=3)
    assert paths
    chains = [[s.opportunity_id for s in p.steps] for p in paths]
    assert ["fi-course-1", "cook-degree-1", "cook-job-1"] in chains
    assert all(chain[-1] == "cook-job-1" for chain in chains)  # the driver job is not a goal

    # Every step is eligible for the client as the earlier steps leave them, and starts after they end.
    evaluator = EligibilityEvaluator(catalogue)
    by_id = {o.opportunity_id: o for o in catalogue}
    for path in paths:
        state, time = client, REFERENCE_DATE
        assert path.goal_isco == "5120"
        for step in path.steps:
            item = by_id[step.opportunity_id]
            assert step.start >= time
            assert evaluator.evaluate(state, step.start).reason_for(step.opportunity_id) is None
            state, _ = apply_completion(state, item)
            time = step.end
        assert path.weeks_to_goal == pytest.approx((path.steps[-1].start - REFERENCE_DATE).days / 7)


def test_the_vacancy_is_not_reachable_directly(world: World) -> None:
    client, items = world
    result = EligibilityEvaluator(list(items.values())).evaluate(client, REFERENCE_DATE)
    assert result.reason_for("cook-job-1") is not None
    assert result.reason_for("cook-degree-1") == "language_gate"


def test_no_goals_no_paths(model: PolkuModel, world: World) -> None:
    _, items = world
    drifter = make_client(prior_occupations=[], goals={"target_occupations": []})
    assert PathPlanner(list(items.values()), model).plan(drifter, REFERENCE_DATE) == []
    explicit = PathPlanner(list(items.values()), model).plan(drifter, REFERENCE_DATE, goals=["8322"])
    assert explicit
    assert explicit[0].steps[-1].opportunity_id == "driver-job-1"


def test_completion_gains_match_apply_completion(world: World) -> None:
    client, items = world
    state = client
    for item in items.values():
        assert completion_gains(state, item) == apply_completion(state, item)[1]
        state, _ = apply_completion(state, item)
        assert completion_gains(state, item) == apply_completion(state, item)[1]


def test_batched_path_scores_equal_single_model_scores(model: PolkuModel, world: World) -> None:
    client, items = world
    catalogue = list(items.values())
    planner = PathPlanner(catalogue, model)
    paths = planner.plan(client, REFERENCE_DATE, max_steps=4, n_paths=3)
    assert paths
    position = {o.opportunity_id: i for i, o in enumerate(catalogue)}
    for path in paths:
        state, time = client, REFERENCE_DATE
        for step in path.steps[:-1]:
            state, _ = apply_completion(state, catalogue[position[step.opportunity_id]])
            time = step.end
        final = position[path.steps[-1].opportunity_id]
        expected = model.score(state, planner.items, np.array([final]), time)[0]
        assert path.score == pytest.approx(float(expected), rel=1e-9, abs=1e-12)
    assert planner.plan(client, REFERENCE_DATE, max_steps=4, n_paths=3) == paths  # no state leaks between calls
