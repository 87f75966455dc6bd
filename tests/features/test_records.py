"""Domain records: unknown codes and impossible levels are rejected naming the field; YKI mapping; audit split."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from features.errors import LanguageLevelError
from features.language import CEFR_LEVELS, YKI_TO_LEVEL, level_from_yki, level_ordinal, steps_between
from features.records import AuditAttributes, ClientProfile, Opportunity
from tests.factories import COOK, make_audit, make_client, make_opportunity, make_training
from tests.strategies import clients, opportunities

UNKNOWN_SKILL = "http://data.europa.eu/esco/skill/00000000-0000-0000-0000-000000000000"
UNKNOWN_OCCUPATION = "http://data.europa.eu/esco/occupation/00000000-0000-0000-0000-000000000000"


def _error(build: Callable[[], Any]) -> tuple[str, str]:
    """Location (dotted) and message of the single validation error raised by ``build``."""
    with pytest.raises(ValidationError) as info:
        build()
    errors = info.value.errors()
    assert len(errors) == 1, errors
    return ".".join(str(p) for p in errors[0]["loc"]), errors[0]["msg"]


# -- valid records and round trips ------------------------------------------------------------------------------------
def test_factories_build_valid_records() -> None:
    client = make_client()
    assert client.skills
    assert client.goals.target_occupations[0].isco == "5120"
    assert make_opportunity().occupation is not None
    assert make_training().route == "degree"


@settings(max_examples=30, deadline=None)
@given(client=clients(), item=opportunities())
def test_json_round_trip(client: ClientProfile, item: Opportunity) -> None:
    assert ClientProfile.model_validate_json(client.model_dump_json()) == client
    assert Opportunity.model_validate_json(item.model_dump_json()) == item


def test_records_are_frozen() -> None:
    client = make_client()
    with pytest.raises(ValidationError):
        client.age = 40  # type: ignore[misc]


# -- unknown codes ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "field", "code"),
    [
        (lambda: make_client(skills=[{"uri": UNKNOWN_SKILL, "level": 2}]), "skills.0.uri", UNKNOWN_SKILL),
        (
            lambda: make_client(prior_occupations=[{"occupation": {"esco_uri": UNKNOWN_OCCUPATION}, "years": 1.0}]),
            "prior_occupations.0.occupation",
            UNKNOWN_OCCUPATION,
        ),
        (
            lambda: make_client(prior_occupations=[{"occupation": {"isco": "9999"}, "years": 1.0}]),
            "prior_occupations.0.occupation",
            "9999",
        ),
        (lambda: make_client(goals={"target_occupations": [{"isco": "0999"}]}), "goals.target_occupations.0", "0999"),
        (lambda: make_client(constraints={"municipality": "000"}), "constraints.municipality", "000"),
        (lambda: make_client(languages=[{"language": "zz", "level": "A1.1"}]), "languages.0.language", "zz"),
        (lambda: make_client(education=[{"isced_level": 3, "field": "9876"}]), "education.0.field", "9876"),
        (lambda: make_client(centre="oulu"), "centre", "oulu"),
        (lambda: make_opportunity(municipality="000"), "municipality", "000"),
        (
            lambda: make_opportunity(required_skills={"essential": [UNKNOWN_SKILL]}),
            "required_skills.essential",
            UNKNOWN_SKILL,
        ),
        (lambda: make_opportunity(occupation={"isco": "9999"}), "occupation", "9999"),
        (lambda: make_opportunity(min_language={"zz": "A1.1"}), "min_language", "zz"),
        (lambda: make_opportunity(completion={"qualification": "000000"}), "completion.qualification", "000000"),
        (
            lambda: make_opportunity(completion={"skills_gained": [UNKNOWN_SKILL]}),
            "completion.skills_gained",
            UNKNOWN_SKILL,
        ),
        (lambda: make_audit("c-0001", country_of_origin="000"), "country_of_origin", "000"),
        (lambda: make_audit("c-0001", mother_tongue="zz"), "mother_tongue", "zz"),
    ],
)
def test_unknown_codes_are_rejected_naming_field_and_code(build: Callable[[], Any], field: str, code: str) -> None:
    loc, msg = _error(build)
    assert loc == field
    assert code in msg


def test_isco_must_match_esco_occupation() -> None:
    loc, msg = _error(lambda: make_opportunity(occupation={"esco_uri": COOK, "isco": "9112"}))
    assert loc == "occupation"
    assert "does not match" in msg


def test_isco_is_derived_from_esco_uri() -> None:
    assert make_opportunity().occupation is not None
    assert make_opportunity().occupation.isco == "5120"  # type: ignore[union-attr]


# -- language levels ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["A3.1", "D1.1", "B1", "a1.1", ""])
def test_impossible_cefr_levels_are_rejected(level: str) -> None:
    loc, _ = _error(lambda: make_client(languages=[{"language": "fi", "level": level}]))
    assert loc == "languages.0.level"
    loc, _ = _error(lambda: make_opportunity(min_language={"fi": level}))
    assert loc == "min_language.fi"
    loc, _ = _error(
        lambda: make_client(languages=[{"language": "fi", "level": "A1.1", "per_skill": {"reading": level}}])
    )
    assert loc == "languages.0.per_skill.reading"


def test_level_ordinal_raises_on_impossible_level() -> None:
    assert [level_ordinal(lvl) for lvl in CEFR_LEVELS] == list(range(14))
    with pytest.raises(LanguageLevelError, match="A3.1"):
        level_ordinal("A3.1")
    assert steps_between("A1.2", "B1.1") == 4
    assert steps_between("C1.1", "A2.1") == 0


@pytest.mark.parametrize(("grade", "level"), sorted(YKI_TO_LEVEL.items()))
def test_yki_grade_maps_to_lowest_sublevel_of_its_band(grade: int, level: str) -> None:
    client = make_client(languages=[{"language": "fi", "source": "yki", "yki_grade": grade}])
    assert client.languages[0].level == level
    assert level_from_yki(grade) == level
    assert level.startswith("ABC"[(grade - 1) // 2])


def test_yki_mapping_values() -> None:
    assert YKI_TO_LEVEL == {1: "A1.1", 2: "A2.1", 3: "B1.1", 4: "B2.1", 5: "C1.1", 6: "C2.1"}


@pytest.mark.parametrize("grade", [0, 7])
def test_impossible_yki_grade_is_rejected(grade: int) -> None:
    loc, _ = _error(lambda: make_client(languages=[{"language": "fi", "source": "yki", "yki_grade": grade}]))
    assert loc == "languages.0.yki_grade"
    with pytest.raises(LanguageLevelError):
        level_from_yki(grade)


def test_yki_source_needs_a_grade_and_explicit_level_wins() -> None:
    loc, msg = _error(lambda: make_client(languages=[{"language": "fi", "source": "yki"}]))
    assert loc == "languages.0"
    assert "yki_grade" in msg
    client = make_client(languages=[{"language": "fi", "source": "yki", "yki_grade": 3, "level": "B1.2"}])
    assert client.languages[0].level == "B1.2"
    assert client.language_ordinal("fi") == level_ordinal("B1.2")
    assert client.language_ordinal("sv") == 0


def test_uncertain_sources() -> None:
    client = make_client()
    en, fi = client.language("en"), client.language("fi")
    assert en is not None
    assert fi is not None
    assert en.is_uncertain
    assert not fi.is_uncertain


# -- other rules ------------------------------------------------------------------------------------------------------
def test_strict_types_and_extra_fields() -> None:
    assert _error(lambda: make_client(age="30"))[0] == "age"
    assert _error(lambda: make_client(age=14))[0] == "age"
    assert _error(lambda: make_client(skills=[{"uri": make_client().skills[0].uri, "level": 5}]))[0] == "skills.0.level"
    assert _error(lambda: make_client(digital_skills=4))[0] == "digital_skills"


def test_duplicates_and_opportunity_rules() -> None:
    skill = make_client().skills[0]
    assert "skills" in _error(lambda: make_client(skills=[skill, skill]))[1]
    assert "route" in _error(lambda: make_opportunity(route="degree"))[1]
    assert "route" in _error(lambda: make_opportunity(kind="training"))[1]
    assert "seats_taken" in _error(lambda: make_opportunity(seats=1, seats_taken=2))[1]
    assert _error(lambda: make_opportunity(intake={"continuous": False}))[0] == "intake"
    desc = {"continuous": False, "dates": [date(2025, 9, 1), date(2025, 1, 1)]}
    assert _error(lambda: make_opportunity(intake=desc))[0] == "intake"


# -- audit attributes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["gender", "mother_tongue", "country_of_origin"])
def test_audit_attributes_are_not_part_of_the_profile(field: str) -> None:
    assert field not in ClientProfile.model_fields
    assert field in AuditAttributes.model_fields
    loc, msg = _error(lambda: make_client(**{field: "x"}))
    assert loc == field
    assert "Extra inputs" in msg


def test_audit_record_is_a_separate_type() -> None:
    audit = make_audit("c-0001", gender="male", mother_tongue="so", country_of_origin="706")
    assert not isinstance(audit, ClientProfile)
    assert set(AuditAttributes.model_fields) == {"client_id", "gender", "mother_tongue", "country_of_origin"}
