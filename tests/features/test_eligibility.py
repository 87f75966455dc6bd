"""Hard eligibility rules: each rule excludes with its own reason; per-centre rules from features/centres.py."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.centres import CENTRES
from features.eligibility import MAX_SOFT_LANGUAGE_STEPS, REASONS, S2_OFFSET_STEPS, EligibilityEvaluator
from features.records import ClientProfile, Opportunity
from tests.factories import REFERENCE_DATE, make_audit, make_client, make_opportunity, make_training
from tests.strategies import catalogues, clients

CENTRE_MUNICIPALITY = {cid: c.municipality for cid, c in CENTRES.items()}


def _reason(client: ClientProfile, item: Opportunity, on: date = REFERENCE_DATE) -> str | None:
    result = EligibilityEvaluator([item]).evaluate(client, on)
    return result.reason_for(item.opportunity_id)


def _client_at(centre: str, **overrides: Any) -> ClientProfile:
    constraints = {"municipality": CENTRE_MUNICIPALITY[centre], "max_travel_km": 40.0}
    return make_client(**{"centre": centre, "constraints": constraints, **overrides})


def _item_at(centre: str, **overrides: Any) -> Opportunity:
    return make_opportunity(**{"centre": centre, "municipality": CENTRE_MUNICIPALITY[centre], **overrides})


def test_base_pair_is_eligible() -> None:
    assert _reason(make_client(), make_opportunity()) is None


# -- one case per rule ------------------------------------------------------------------------------------------------
NO_FI: dict[str, Any] = {"min_language": {}}
PENDING_DEGREE: dict[str, Any] = {"isced_level": 6, "recognition": "pending"}
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("other_centre", {}, {"centre": "espoo"}),
    ("item_age", {}, {"rules": {"min_age": 40}}),
    ("item_age", {"age": 60}, {"rules": {"max_age": 29}}),
    ("client_type", {}, {"rules": {"client_types": ("municipal",)}}),
    ("work_permit", {"status": {"work_permit": False, "in_integration_period": True}}, {}),
    ("integration_period", {"status": {"in_integration_period": False}}, {"rules": {"integration_period_only": True}}),
    ("language_gate", {}, {"min_language": {"fi": "B2.1"}}),
    ("literacy_gate", {"literacy": "none"}, {"min_literacy": "functional"}),
    ("education_prerequisite", {}, {"min_isced": 5}),
    (
        "recognition_missing",
        {"education": [{"isced_level": 6, "recognition": "pending"}]},
        {"requires_recognition": True},
    ),
    ("no_seats", {}, {"seats": 3, "seats_taken": 3}),
    ("no_intake", {}, {"intake": {"continuous": False, "dates": [date(2025, 1, 10), date(2025, 8, 31)]}}),
    ("too_far", {"constraints": {"municipality": "091", "max_travel_km": 40.0}}, {"municipality": "837"}),
]


@pytest.mark.parametrize(("reason", "client_kw", "item_kw"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_excludes_with_its_reason(reason: str, client_kw: dict[str, Any], item_kw: dict[str, Any]) -> None:
    assert reason in REASONS
    assert _reason(make_client(**client_kw), make_opportunity(**item_kw)) == reason


@pytest.mark.parametrize(
    ("client_kw", "item_kw"),
    [
        ({"status": {"work_permit": False}}, {"kind": "training", "route": "language", **NO_FI}),
        ({"status": {"in_integration_period": True}}, {"rules": {"integration_period_only": True}}),
        ({}, {"min_language": {"fi": "B1.1"}}),  # 2 steps short: a gap to explain, not a gate
        ({}, {"min_language": {"fi": "B2.1"}, "s2_support": True}),  # S2 support offsets two steps
        ({}, {"min_language": {"fi": "C1.1", "en": "B1.1"}}),  # any one working language suffices
        ({"literacy": "none"}, {"min_literacy": "basic"}),  # one literacy step is soft
        ({"education": [{"isced_level": 6, "recognition": "recognised"}]}, {"requires_recognition": True}),
        ({"education": [{"isced_level": 6, "recognition": "not_needed"}]}, {"requires_recognition": True}),
        ({}, {"intake": {"continuous": False, "dates": [date(2025, 1, 10), REFERENCE_DATE]}}),
        ({"constraints": {"municipality": "091", "max_travel_km": 250.0}}, {"municipality": "837"}),
    ],
)
def test_boundaries_that_stay_eligible(client_kw: dict[str, Any], item_kw: dict[str, Any]) -> None:
    assert _reason(make_client(**client_kw), make_opportunity(**item_kw)) is None


def test_language_soft_margin_constants() -> None:
    assert MAX_SOFT_LANGUAGE_STEPS == 2
    assert S2_OFFSET_STEPS == 2
    # A2.1 client: B2.1 is 4 steps, B2.1 with S2 is 2 steps (soft), C1.1 with S2 is 4 steps (gate).
    client = make_client()
    assert _reason(client, make_opportunity(min_language={"fi": "C1.1"}, s2_support=True)) == "language_gate"


# -- per-centre rules -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("centre", list(CENTRES))
def test_centre_minimum_age(centre: str) -> None:
    min_age = CENTRES[centre].rules.min_age
    item = _item_at(centre)
    assert _reason(_client_at(centre, age=min_age - 1), item) == "centre_min_age"
    assert _reason(_client_at(centre, age=min_age), item) is None


def test_helsinki_serves_17_year_olds_but_vantaa_does_not() -> None:
    assert CENTRES["helsinki"].rules.min_age == 17
    assert _reason(_client_at("helsinki", age=17), _item_at("helsinki")) is None
    assert _reason(_client_at("vantaa", age=17), _item_at("vantaa")) == "centre_min_age"


@pytest.mark.parametrize("route", ["language", "basic_skills", "workshop", "preparatory"])
def test_vantaa_group_services_need_finnish_a2(route: str) -> None:
    rules = CENTRES["vantaa"].rules
    assert rules.group_services_min_finnish == "A2.1"
    assert route in rules.group_routes
    group = make_training(centre="vantaa", municipality="092", route=route, **NO_FI)
    low = _client_at("vantaa", languages=[{"language": "fi", "level": "A1.3"}])
    ok = _client_at("vantaa", languages=[{"language": "fi", "level": "A2.1"}])
    assert _reason(low, group) == "centre_language_gate"
    assert _reason(ok, group) is None


def test_vantaa_language_gate_spares_other_routes_and_other_centres() -> None:
    low_fi = [{"language": "fi", "level": "A1.1"}]
    degree = make_training(centre="vantaa", municipality="092", route="degree", **NO_FI)
    assert _reason(_client_at("vantaa", languages=low_fi), degree) is None
    helsinki_group = make_training(route="language", **NO_FI)
    assert _reason(_client_at("helsinki", languages=low_fi), helsinki_group) is None


def test_centre_client_type_rule() -> None:
    rules = CENTRES["helsinki"].rules.model_copy(update={"client_types": ("te",)})
    centres = {**CENTRES, "helsinki": CENTRES["helsinki"].model_copy(update={"rules": rules})}
    item = make_opportunity()
    client = make_client(status={"client_type": "municipal"})
    result = EligibilityEvaluator([item], centres=centres).evaluate(client, REFERENCE_DATE)
    assert result.reason_for(item.opportunity_id) == "client_type"


# -- result object ----------------------------------------------------------------------------------------------------
def test_first_failing_rule_is_the_reason_and_result_views_agree() -> None:
    far_and_full = make_opportunity(municipality="837", seats=1, seats_taken=1)
    other = make_opportunity(centre="turku", seats=1, seats_taken=1)
    fine = make_opportunity()
    ev = EligibilityEvaluator([far_and_full, other, fine])
    result = ev.evaluate(make_client(), REFERENCE_DATE)
    assert result.reason_for(far_and_full.opportunity_id) == "no_seats"
    assert result.reason_for(other.opportunity_id) == "other_centre"
    assert result.reason_for(fine.opportunity_id) is None
    assert result.reason_for("opp-not-in-catalogue") is None
    assert result.mask.tolist() == [False, False, True]
    assert result.eligible_indices.tolist() == [2]
    assert result.excluded_counts() == {"no_seats": 1, "other_centre": 1}
    assert [(e.opportunity_id, e.reason) for e in result.exclusions()] == [
        (far_and_full.opportunity_id, "no_seats"),
        (other.opportunity_id, "other_centre"),
    ]
    assert len(ev) == 3
    assert ev.distances_from("091")[0] > 100


def test_audit_attributes_are_refused() -> None:
    ev = EligibilityEvaluator([make_opportunity()])
    with pytest.raises(TypeError):
        ev.evaluate(make_audit("c-0001"), REFERENCE_DATE)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(client=clients(), ops=catalogues(max_size=10))
def test_every_item_gets_one_known_code(client: ClientProfile, ops: list[Opportunity]) -> None:
    ops = list({o.opportunity_id: o for o in ops}.values())
    result = EligibilityEvaluator(ops).evaluate(client, REFERENCE_DATE)
    assert result.reason_codes.shape == (len(ops),)
    assert np.all((result.reason_codes >= 0) & (result.reason_codes < len(REASONS)))
    other = np.array([o.centre != client.centre for o in ops])
    assert np.all(result.reason_codes[other] == REASONS.index("other_centre"))
    assert len(result.exclusions()) + result.mask.sum() == len(ops)


@settings(max_examples=25, deadline=None)
@given(cs=st.lists(clients(), min_size=1, max_size=6), ops=catalogues(), data=st.data())
def test_many_clients_against_one_item_match_the_per_client_evaluation(
    cs: list[ClientProfile], ops: list[Opportunity], data: st.DataObject
) -> None:
    from features.eligibility import ClientTable

    evaluator = EligibilityEvaluator(ops)
    item = data.draw(st.integers(0, len(ops) - 1))
    on = data.draw(st.sampled_from([REFERENCE_DATE, date(2031, 1, 1)]))
    got = evaluator.evaluate_clients(ClientTable.build(cs), item, on)
    want = [int(evaluator.evaluate(c, on).reason_codes[item]) for c in cs]
    assert [int(x) for x in got] == want


@settings(max_examples=25, deadline=None)
@given(cs=st.lists(clients(), min_size=1, max_size=5), ops=catalogues(), data=st.data())
def test_several_states_in_one_pass_match_one_at_a_time(
    cs: list[ClientProfile], ops: list[Opportunity], data: st.DataObject
) -> None:
    """A path planner's frontier (states of one client, each on its own day) is evaluated in one pass."""
    evaluator = EligibilityEvaluator(ops)
    days = [data.draw(st.sampled_from([REFERENCE_DATE, date(2027, 3, 1), date(2031, 1, 1)])) for _ in cs]
    same_centre = [c.model_copy(update={"centre": cs[0].centre}) for c in cs]
    for states in (cs, same_centre):
        together = evaluator.reason_codes_of(states, days)
        for s, day, row in zip(states, days, together, strict=True):
            assert row.tolist() == evaluator.reason_codes_at(s, day).tolist()
            assert row.tolist() == evaluator.evaluate(s, day).reason_codes.tolist()
        positions = np.arange(len(ops))[::-1]
        picked = evaluator.reason_codes_of(states, days, positions)
        assert picked.tolist() == together[:, positions].tolist()
