"""Competence centres and their own eligibility rules (configuration as data, per domain.md §6 and §9.2/§9.18)."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from features.language import CefrLevel


class CentreRules(BaseModel):
    """Hard entry rules a centre applies before anything is ranked.

    Attributes:
        min_age: youngest age served, in full years.
        group_services_min_finnish: Finnish level required for group-based trainings (Vantaa: A2).
        group_routes: training routes that count as group services for that rule.
        client_types: administrative client types the centre serves.
        home_region: maakunta code whose residents the centre serves.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    min_age: int = Field(ge=15, le=30)
    group_services_min_finnish: CefrLevel | None = None
    group_routes: tuple[str, ...] = ()
    client_types: tuple[str, ...] = ("te", "municipal")
    home_region: str


class Centre(BaseModel):
    """A competence centre (osaamiskeskus)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    centre_id: str
    name_fi: str
    name_en: str
    municipality: str
    rules: CentreRules


_GROUP_ROUTES: Final = ("language", "basic_skills", "workshop", "preparatory")

# Sources: 001 Helsinki ("yli 17-vuotiaat": read as 17 and older), 001 Vantaa (täysi-ikäisyys: 18+, and
# Finnish "A.2." or better for group activities: read as A2.1), the others state no extra rule (18+ adults).
CENTRES: Final[dict[str, Centre]] = {
    c.centre_id: c
    for c in (
        Centre(
            centre_id="helsinki",
            name_fi="Stadin osaamiskeskus",
            name_en="Helsinki competence centre",
            municipality="091",
            rules=CentreRules(min_age=17, home_region="01"),
        ),
        Centre(
            centre_id="espoo",
            name_fi="Omnia, maahanmuuttajien osaamiskeskus",
            name_en="Espoo (Omnia) competence centre",
            municipality="049",
            rules=CentreRules(min_age=18, home_region="01"),
        ),
        Centre(
            centre_id="vantaa",
            name_fi="Vantaan osaamiskeskus",
            name_en="Vantaa competence centre",
            municipality="092",
            rules=CentreRules(
                min_age=18, group_services_min_finnish="A2.1", group_routes=_GROUP_ROUTES, home_region="01"
            ),
        ),
        Centre(
            centre_id="tampere",
            name_fi="Kansainvälinen osaamiskeskus Tampere",
            name_en="Tampere international competence centre",
            municipality="837",
            rules=CentreRules(min_age=18, home_region="06"),
        ),
        Centre(
            centre_id="turku",
            name_fi="Turun osaamispiste",
            name_en="Turku competence point",
            municipality="853",
            rules=CentreRules(min_age=18, home_region="02"),
        ),
    )
}
CENTRE_IDS: Final[tuple[str, ...]] = tuple(CENTRES)
