"""Real ESCO occupations the synthetic world uses, with sector and the vocational qualification leading to them.

The demand side follows domain.md §4 (care & education, services, property & technology, hospitality,
cleaning, logistics incl. the taxi training of 003 Nosto, construction, retail, ICT); the supply side adds
occupations clients had before coming to Finland (teachers, engineers, doctors, accountants, tailors, farmers).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

from features.records import Sector
from features.taxonomy import Taxonomy


@dataclass(frozen=True)
class WorldOccupation:
    """An ESCO occupation with its sector, qualification code (or None), demand weight and core ESCO skills."""

    uri: str
    label: str
    isco: str
    sector: Sector
    qualification: str | None
    weight: float
    essential: tuple[str, ...]
    optional: tuple[str, ...]


# (ESCO preferred label, sector, vocational qualification code or None, weight in the catalogue)
_DEMAND: Final[tuple[tuple[str, Sector, str | None, float], ...]] = (
    ("home care aide", "care_and_education", "371101", 3.0),
    ("nurse assistant", "health", "371101", 2.0),
    ("healthcare assistant", "health", "371101", 1.5),
    ("child day care worker", "care_and_education", "381241", 2.0),
    ("early years teaching assistant", "care_and_education", "381241", 1.5),
    ("building cleaner", "cleaning", "381141", 3.0),
    ("building caretaker", "property_and_technology", "351204", 1.5),
    ("kitchen assistant", "hospitality", "381142", 2.0),
    ("cook", "hospitality", "381142", 1.5),
    ("waiter/waitress", "hospitality", "381112", 1.0),
    ("carpenter", "construction", "352201", 1.0),
    ("building construction worker", "construction", "352201", 1.5),
    ("construction painter", "construction", "352201", 1.0),
    ("taxi driver", "logistics", "381408", 1.0),
    ("bus driver", "logistics", "381408", 1.0),
    ("warehouse worker", "logistics", "381408", 2.0),
    ("shop assistant", "retail", "331101", 1.5),
    ("cashier", "retail", "331101", 1.0),
    ("plumber", "property_and_technology", "351203", 0.7),
    ("electrician", "property_and_technology", "351407", 0.7),
    ("welder", "manufacturing", "351101", 0.8),
    ("baker", "manufacturing", "352101", 0.7),
    ("ICT help desk agent", "ict", "341101", 0.8),
    ("software developer", "ict", None, 0.6),
    ("office clerk", "business", "331101", 1.0),
    ("nurse responsible for general care", "health", None, 0.6),
    ("hairdresser", "services", "381342", 0.8),
    ("garden labourer", "agriculture", "364202", 0.8),
)

# Occupations held before arrival only (not in the catalogue): (label, sector, weight among prior jobs).
_PRIOR_ONLY: Final[tuple[tuple[str, Sector, float], ...]] = (
    ("primary school teacher", "care_and_education", 1.0),
    ("civil engineer", "construction", 0.6),
    ("general practitioner", "health", 0.4),
    ("accountant", "business", 0.6),
    ("tailor", "manufacturing", 1.0),
    ("street food vendor", "hospitality", 1.0),
)

# Each occupation's first ESCO essential/optional skills form its "core" from which items and clients sample,
# so that a client's past job and an item in the same occupation share skills often enough to matter.
CORE_SKILLS: Final = 12

# Higher-education occupations (bridging programmes lead to them).
HIGHER_EDUCATION_LABELS: Final = ("software developer", "nurse responsible for general care")


@cache
def _label_index(tax: Taxonomy) -> dict[str, str]:
    return {tax.occupation_label(u): u for u in tax.occupation_uris}


def _make(tax: Taxonomy, label: str, sector: Sector, qual: str | None, weight: float) -> WorldOccupation:
    uri = _label_index(tax)[label]
    ess, opt = tax.occupation_skills(uri)
    core_ess, core_opt = tuple(ess[:CORE_SKILLS]), tuple(opt[:CORE_SKILLS])
    return WorldOccupation(uri, label, tax.isco_of_occupation(uri), sector, qual, weight, core_ess, core_opt)


@cache
def demand_occupations(tax: Taxonomy) -> tuple[WorldOccupation, ...]:
    """Occupations of work trials, vacancies and vocational trainings (all real ESCO v1.1.1 concepts)."""
    return tuple(_make(tax, lab, sec, q, w) for lab, sec, q, w in _DEMAND)


@cache
def prior_occupations(tax: Taxonomy) -> tuple[WorldOccupation, ...]:
    """Occupations clients may have held before: the demand list plus some professions from abroad."""
    extra = tuple(_make(tax, lab, sec, None, w) for lab, sec, w in _PRIOR_ONLY)
    return demand_occupations(tax) + extra
