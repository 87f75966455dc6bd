"""Small builders for valid domain records with real ESCO codes (overrides replace top-level fields).

Example::

    client = make_client(age=40, languages=[{"language": "fi", "level": "B1.1"}])
    vacancy = make_opportunity(seats=3, min_language={"fi": "A2.2"})
    course = make_training(route="language")
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from features.records import AuditAttributes, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy

COOK = "http://data.europa.eu/esco/occupation/90f75f67-495d-49fa-ab57-2f320e251d7e"  # ISCO 5120
HOME_CARE_AIDE = "http://data.europa.eu/esco/occupation/1391bdf9-bd61-4fb5-91ca-c29036ab2b60"  # ISCO 5322
REFERENCE_DATE = date(2025, 9, 1)


def occupation_skills(uri: str = COOK) -> tuple[list[str], list[str]]:
    """Essential and optional ESCO skill URIs of a real occupation."""
    return default_taxonomy().occupation_skills(uri)


def random_client_id() -> str:
    """A fresh pseudonymous client id."""
    return f"c-{uuid.uuid4().hex[:12]}"


def random_opportunity_id() -> str:
    """A fresh opportunity id."""
    return f"opp-{uuid.uuid4().hex[:12]}"


def make_client(**overrides: Any) -> ClientProfile:
    """A valid Helsinki client: a cook with some kitchen skills, Finnish A2.1, goal cook; override any field."""
    essential, _ = occupation_skills(COOK)
    fields: dict[str, Any] = {
        "client_id": random_client_id(),
        "centre": "helsinki",
        "age": 32,
        "skills": [{"uri": uri, "level": 3, "evidence": "demonstrated"} for uri in essential[:4]],
        "prior_occupations": [{"occupation": {"esco_uri": COOK}, "years": 3.0}],
        "education": [{"isced_level": 3, "recognition": "none"}],
        "languages": [
            {"language": "fi", "level": "A2.1", "source": "teacher"},
            {"language": "en", "level": "B1.1", "source": "self"},
        ],
        "literacy": "functional",
        "digital_skills": 2,
        "goals": {"target_occupations": [{"esco_uri": COOK}], "preferred_path": "either"},
        "constraints": {"municipality": "091", "max_travel_km": 40.0},
        "support_need": "medium",
        "status": {"client_type": "te", "in_integration_period": True, "work_permit": True},
        "consent": {"matching": True, "share_with_coordinators": True, "model_training": True},
    }
    fields.update(overrides)
    return ClientProfile.model_validate(fields)


def make_opportunity(**overrides: Any) -> Opportunity:
    """A valid Helsinki cook vacancy with real essential/optional ESCO skills; override any field."""
    essential, optional = occupation_skills(COOK)
    fields: dict[str, Any] = {
        "opportunity_id": random_opportunity_id(),
        "kind": "vacancy",
        "centre": "helsinki",
        "provider": "Ravintola Esimerkki Oy",
        "title": {"fi": "Kokki", "en": "Cook"},
        "occupation": {"esco_uri": COOK},
        "sector": "hospitality",
        "required_skills": {"essential": essential[:6], "optional": optional[:4]},
        "min_language": {"fi": "A2.1"},
        "municipality": "091",
        "intake": {"continuous": True},
        "duration_weeks": 26.0,
        "seats": 2,
        "support_level": "low",
    }
    fields.update(overrides)
    return Opportunity.model_validate(fields)


def make_training(**overrides: Any) -> Opportunity:
    """A valid Helsinki training (default: S2-supported degree towards cook with two intakes)."""
    essential, _ = occupation_skills(COOK)
    fields: dict[str, Any] = {
        "kind": "training",
        "route": "degree",
        "provider": "Stadin ammatti- ja aikuisopisto",
        "title": {"fi": "Kokin koulutus", "en": "Cook training"},
        "occupation": None,
        "required_skills": {"essential": [], "optional": essential[:2]},
        "min_language": {"fi": "A2.2"},
        "s2_support": True,
        "intake": {"continuous": False, "dates": [date(2025, 8, 11), date(2026, 1, 12)]},
        "duration_weeks": 80.0,
        "seats": 20,
        "seats_taken": 5,
        "support_level": "medium",
        "completion": {"skills_gained": essential[:10], "isced_reached": 3, "leads_to": {"esco_uri": COOK}},
    }
    fields.update(overrides)
    return make_opportunity(**fields)


def make_audit(client_id: str, **overrides: Any) -> AuditAttributes:
    """Audit-only attributes for a client."""
    fields: dict[str, Any] = {"client_id": client_id, "gender": "female", "mother_tongue": "ar"}
    fields.update(overrides)
    return AuditAttributes.model_validate(fields)
