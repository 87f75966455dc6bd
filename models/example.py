"""A generated, clearly fake client for the MLflow input example: no training client's data enters the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from features.records import ClientProfile, Opportunity
from features.taxonomy import default_taxonomy

if TYPE_CHECKING:
    import pandas as pd

FAKE_CLIENT_ID: Final = "example-not-a-person"
_COOK: Final = "http://data.europa.eu/esco/occupation/90f75f67-495d-49fa-ab57-2f320e251d7e"  # ISCO 5120


def fake_client() -> ClientProfile:
    """A made-up Helsinki client (a cook with Finnish A2.1), built from the shipped code lists only."""
    essential, _ = default_taxonomy().occupation_skills(_COOK)
    return ClientProfile.model_validate(
        {
            "client_id": FAKE_CLIENT_ID,
            "centre": "helsinki",
            "age": 30,
            "skills": [{"uri": uri, "level": 2} for uri in essential[:3]],
            "prior_occupations": [{"occupation": {"esco_uri": _COOK}, "years": 2.0}],
            "languages": [{"language": "fi", "level": "A2.1"}, {"language": "en", "level": "B1.1"}],
            "goals": {"target_occupations": [{"esco_uri": _COOK}]},
            "constraints": {"municipality": "091", "max_travel_km": 30.0},
            "consent": {"matching": True},
        }
    )


def fake_input_example(opportunities: Sequence[Opportunity], n: int = 3) -> pd.DataFrame:
    """The pyfunc input example: :func:`fake_client` against the first ``n`` catalogue items (no personal data)."""
    from models.packaging import make_input_example

    return make_input_example([fake_client()], opportunities, n=n)
