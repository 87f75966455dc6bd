"""Hypothesis strategies for valid ClientProfile and Opportunity records, drawn from the shipped code lists.

Pydantic v2 no longer derives strategies, so these build valid dicts explicitly. Skills come from a pool of
real occupations' ESCO skills (plus a few random ones), so that clients and items overlap often enough for the
properties to be meaningful.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from typing import Any

from hypothesis import strategies as st

from features.centres import CENTRE_IDS
from features.language import CEFR_LEVELS
from features.records import KINDS, LITERACY_LEVELS, ROUTES, SECTORS, SUPPORT_LEVELS, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy

POOL_OCCUPATIONS: tuple[str, ...] = (
    "http://data.europa.eu/esco/occupation/90f75f67-495d-49fa-ab57-2f320e251d7e",  # cook
    "http://data.europa.eu/esco/occupation/1391bdf9-bd61-4fb5-91ca-c29036ab2b60",  # home care aide
    "http://data.europa.eu/esco/occupation/23be4cb6-c5e7-449e-8d76-8edfe9a00478",  # furniture cleaner
    "http://data.europa.eu/esco/occupation/11e6d39e-1295-40e7-8eea-3eb042bc7e34",  # industrial cook
)
LANGUAGES: tuple[str, ...] = ("fi", "sv", "en", "ar")


@cache
def skill_pool() -> tuple[str, ...]:
    """Essential and optional skills of the pool occupations plus every 997th ESCO skill (deterministic)."""
    tax = default_taxonomy()
    uris: list[str] = []
    for occ in POOL_OCCUPATIONS:
        essential, optional = tax.occupation_skills(occ)
        uris.extend(essential + optional[:10])
    uris.extend(tax.skill_uris[::997])
    return tuple(dict.fromkeys(uris))


@cache
def municipalities() -> tuple[str, ...]:
    """Municipalities with coordinates (around the five centres)."""
    return tuple(default_taxonomy().municipalities_with_coordinates)


def skill_uris(max_size: int = 12) -> st.SearchStrategy[list[str]]:
    """Unique ESCO skill URIs from the pool."""
    return st.lists(st.sampled_from(skill_pool()), max_size=max_size, unique=True)


def occupation_refs() -> st.SearchStrategy[dict[str, Any]]:
    """An occupation as ESCO URI or as an ISCO-08 prefix of one (1–4 digits)."""
    tax = default_taxonomy()
    by_uri = st.sampled_from(POOL_OCCUPATIONS).map(lambda u: {"esco_uri": u})
    by_isco = st.tuples(st.sampled_from(POOL_OCCUPATIONS), st.integers(1, 4)).map(
        lambda t: {"isco": tax.isco_of_occupation(t[0])[: t[1]]}
    )
    return st.one_of(by_uri, by_isco)


def cefr_levels() -> st.SearchStrategy[str]:
    """A level on the Finnish scale."""
    return st.sampled_from(CEFR_LEVELS)


@st.composite
def language_skills(draw: st.DrawFn, language: str) -> dict[str, Any]:
    """A language record given by level or by YKI grade."""
    if draw(st.booleans()):
        return {"language": language, "source": "yki", "yki_grade": draw(st.integers(1, 6))}
    return {"language": language, "level": draw(cefr_levels()), "source": draw(st.sampled_from(["teacher", "self"]))}


@st.composite
def client_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Field dict of a valid ClientProfile."""
    skills = draw(skill_uris())
    langs = draw(st.lists(st.sampled_from(LANGUAGES), max_size=3, unique=True))
    return {
        "client_id": f"c-{draw(st.integers(0, 10**9)):09d}",
        "centre": draw(st.sampled_from(CENTRE_IDS)),
        "age": draw(st.integers(15, 70)),
        "skills": [{"uri": u, "level": draw(st.integers(1, 4))} for u in skills],
        "prior_occupations": draw(
            st.lists(
                st.fixed_dictionaries({"occupation": occupation_refs(), "years": st.floats(0, 30)}),
                max_size=2,
            )
        ),
        "education": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "isced_level": st.integers(0, 8),
                        "recognition": st.sampled_from(["not_needed", "none", "pending", "partial", "recognised"]),
                    }
                ),
                max_size=2,
            )
        ),
        "languages": [draw(language_skills(lang)) for lang in langs],
        "literacy": draw(st.sampled_from(LITERACY_LEVELS)),
        "digital_skills": draw(st.integers(0, 3)),
        "goals": {
            "target_occupations": draw(st.lists(occupation_refs(), max_size=2)),
            "preferred_path": draw(st.sampled_from(["work", "education", "either"])),
        },
        "constraints": {
            "municipality": draw(st.sampled_from(municipalities())),
            "max_travel_km": draw(st.floats(0, 200)),
        },
        "support_need": draw(st.sampled_from(SUPPORT_LEVELS)),
        "status": {
            "client_type": draw(st.sampled_from(["te", "municipal"])),
            "in_integration_period": draw(st.booleans()),
            "work_permit": draw(st.booleans()),
        },
    }


def clients() -> st.SearchStrategy[ClientProfile]:
    """Valid ClientProfile records."""
    return client_dicts().map(ClientProfile.model_validate)


@st.composite
def intakes(draw: st.DrawFn) -> dict[str, Any]:
    """Continuous admission or 1–6 ascending intake dates in 2025–2026."""
    if draw(st.booleans()):
        return {"continuous": True}
    days = draw(st.lists(st.integers(0, 720), min_size=1, max_size=6, unique=True))
    return {"continuous": False, "dates": [date(2025, 1, 1) + timedelta(days=d) for d in sorted(days)]}


@st.composite
def opportunity_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Field dict of a valid Opportunity."""
    kind = draw(st.sampled_from(KINDS))
    seats = draw(st.integers(0, 30))
    essential = draw(skill_uris(max_size=10))
    optional = [u for u in draw(skill_uris(max_size=10)) if u not in essential]
    langs = draw(st.lists(st.sampled_from(("fi", "sv", "en")), max_size=2, unique=True))
    return {
        "opportunity_id": f"opp-{draw(st.integers(0, 10**9)):09d}",
        "kind": kind,
        "route": draw(st.sampled_from(ROUTES)) if kind == "training" else None,
        "centre": draw(st.sampled_from(CENTRE_IDS)),
        "provider": "Provider Oy",
        "title": {"fi": "Tehtävä"},
        "occupation": draw(st.none() | occupation_refs()),
        "sector": draw(st.sampled_from(SECTORS)),
        "required_skills": {"essential": essential, "optional": optional},
        "min_language": {lang: draw(cefr_levels()) for lang in langs},
        "s2_support": draw(st.booleans()),
        "min_literacy": draw(st.sampled_from(LITERACY_LEVELS)),
        "min_digital": draw(st.integers(0, 3)),
        "min_isced": draw(st.none() | st.integers(0, 8)),
        "requires_recognition": draw(st.booleans()),
        "municipality": draw(st.sampled_from(municipalities())),
        "intake": draw(intakes()),
        "duration_weeks": draw(st.floats(0.5, 200)),
        "seats": seats,
        "seats_taken": draw(st.integers(0, seats)),
        "needs_te_decision": draw(st.booleans()),
        "pay_subsidy": draw(st.booleans()),
        "support_level": draw(st.sampled_from(SUPPORT_LEVELS)),
        "completion": {
            "skills_gained": draw(skill_uris(max_size=6)),
            "language_reached": {"fi": draw(cefr_levels())} if draw(st.booleans()) else {},
            "literacy_reached": draw(st.none() | st.sampled_from(LITERACY_LEVELS)),
            "isced_reached": draw(st.none() | st.integers(0, 8)),
        },
    }


def opportunities() -> st.SearchStrategy[Opportunity]:
    """Valid Opportunity records."""
    return opportunity_dicts().map(Opportunity.model_validate)


def catalogues(min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[list[Opportunity]]:
    """Lists of opportunities with unique ids."""
    return st.lists(opportunities(), min_size=min_size, max_size=max_size, unique_by=lambda o: o.opportunity_id)
