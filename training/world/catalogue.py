"""Synthetic opportunity catalogue modelled on the seeds' services (domain.md §3), in real ESCO occupations.

Every centre gets at least one item of each training route and of each kind; the rest is drawn by weight.
Completion effects let steps chain into paths: a language course raises Finnish by two sub-levels, literacy
training raises literacy, basic-skills groups give ISCED 2 and digital skills, workshops / degrees /
apprenticeships give skills of their occupation (degrees and apprenticeships also a real qualification code).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Final

import numpy as np

from features.centres import CENTRES
from features.language import CEFR_LEVELS
from features.records import ROUTES, Opportunity
from features.taxonomy import Taxonomy
from training.world.draws import Draws, cumulative
from training.world.occupations import HIGHER_EDUCATION_LABELS, WorldOccupation, demand_occupations
from training.world.population import CENTRE_SHARES, quota, quota_counts
from training.world.progress import progress_bar

# Item types: the ten training routes, then work_trial and vacancy. Weights of the drawn remainder.
ITEM_TYPES: Final[tuple[str, ...]] = (*ROUTES, "work_trial", "vacancy")
_TYPE_WEIGHTS: Final[dict[str, float]] = {
    "literacy": 0.03,
    "language": 0.10,
    "basic_skills": 0.04,
    "preparatory": 0.04,
    "workshop": 0.08,
    "degree": 0.08,
    "apprenticeship": 0.05,
    "rehabilitative": 0.02,
    "entrepreneurship": 0.02,
    "higher_education_bridge": 0.02,
    "work_trial": 0.20,
    "vacancy": 0.32,
}
_PROVIDERS: Final[dict[str, tuple[str, ...]]] = {
    "helsinki": ("Stadin ammatti- ja aikuisopisto", "Helsingin työväenopisto", "Helsingin aikuislukio", "Arbis"),
    "espoo": ("Omnia", "Espoon työväenopisto", "Omnian aikuislukio"),
    "vantaa": ("Varia", "Vantaan aikuisopisto", "Keuda"),
    "tampere": ("Tredu", "Sampolan kansalaisopisto", "Tampereen aikuislukio"),
    "turku": ("Turun ammatti-instituutti", "Turun suomenkielinen työväenopisto", "Turun aikuislukio"),
}
_ROUTE_TITLES: Final[dict[str, tuple[str, str]]] = {
    "literacy": ("Luku- ja kirjoitustaidon koulutus", "Literacy training"),
    "language": ("Suomen kieli", "Finnish language"),
    "basic_skills": ("Perustaitojen ryhmä", "Basic-skills group"),
    "preparatory": ("Ammatilliseen koulutukseen valmentava koulutus", "Preparatory education for vocational studies"),
    "workshop": ("Ammatillinen työpaja", "Vocational workshop"),
    "degree": ("Tutkinto", "Qualification"),
    "apprenticeship": ("Oppisopimus", "Apprenticeship"),
    "rehabilitative": ("Kuntouttava moduuli", "Rehabilitative module"),
    "entrepreneurship": ("Yrittäjyyspolku", "Entrepreneurship path"),
    "higher_education_bridge": ("Korkeakoulusiltakoulutus", "Higher-education bridging programme"),
}
_LANG_ENTRY: Final = (0, 1, 2, 3, 4, 5, 6)  # ordinal of the course's entry level (0 = no Finnish)


def _intakes(cohorts: Sequence[int], months: Sequence[int], day: int = 1) -> list[date]:
    # Intakes run three years past the last cohort, so that a service started today still has upcoming starts.
    years = [*cohorts, *range(max(cohorts) + 1, max(cohorts) + 4)]
    return sorted(date(y, m, day) for y in years for m in months)


class _CatalogueBuilder:
    def __init__(self, rng: np.random.Generator, tax: Taxonomy, cohorts: Sequence[int]) -> None:
        self.rng = rng
        self.draw = Draws(rng)
        self.tax = tax
        self.cohorts = cohorts
        self.occ = [o for o in demand_occupations(tax) if o.label not in HIGHER_EDUCATION_LABELS]
        self.he_occ = [o for o in demand_occupations(tax) if o.label in HIGHER_EDUCATION_LABELS]
        self.all_occ = list(demand_occupations(tax))
        w = np.array([o.weight for o in self.all_occ])
        self.all_p = w / w.sum()
        self.qual_occ = [o for o in self.occ if o.qualification]
        self.near = {c: tax.municipalities_near(CENTRES[c].municipality, 30.0) for c in CENTRES}
        self._cdf: dict[int, list[float]] = {}
        self._dates: dict[tuple[int, ...], list[date]] = {}
        self._labels: dict[tuple[str, str], str] = {}

    # -- helpers ------------------------------------------------------------------------------------------------
    def _pick(self, pool: Sequence[WorldOccupation]) -> WorldOccupation:
        cdf = self._cdf.get(id(pool))
        if cdf is None:
            w = np.array([o.weight for o in pool])
            cdf = self._cdf[id(pool)] = cumulative(w / w.sum())
        return pool[self.draw.weighted(cdf)]

    def _sample(self, uris: Sequence[str], lo: int, hi: int) -> list[str]:
        k = min(len(uris), int(self.rng.integers(lo, hi + 1)))
        return [uris[j] for j in self.draw.sample(len(uris), k)] if k else []

    def _municipality(self, centre: str) -> str:
        if self.rng.random() < 0.6:
            return CENTRES[centre].municipality
        near = self.near[centre]
        return near[self.draw.index(len(near))]

    def _occ_label(self, uri: str, lang: str) -> str:
        label = self._labels.get((uri, lang))
        if label is None:
            label = self._labels[(uri, lang)] = self.tax.occupation_label(uri, lang)
        return label

    def _seats(self, lo: int, hi: int) -> dict[str, int]:
        seats = int(self.rng.integers(lo, hi + 1))
        full = self.rng.random() < 0.04
        taken = seats if full else int(self.rng.integers(0, max(1, seats // 2)))
        return {"seats": seats, "seats_taken": taken}

    def _dated(self, months: Sequence[int]) -> dict[str, Any]:
        dates = self._dates.get(tuple(months))
        if dates is None:
            dates = self._dates[tuple(months)] = _intakes(self.cohorts, months)
        return {"continuous": False, "dates": dates}

    # -- item kinds ---------------------------------------------------------------------------------------------
    def build(self, oid: str, centre: str, item_type: str) -> Opportunity:
        base: dict[str, Any] = {
            "opportunity_id": oid,
            "centre": centre,
            "municipality": self._municipality(centre),
        }
        if item_type in ("work_trial", "vacancy"):
            data = self._job(item_type, self._pick(self.all_occ if item_type == "vacancy" else self.occ))
        else:
            data = getattr(self, f"_{item_type}")()
            provider = _PROVIDERS[centre][self.draw.index(len(_PROVIDERS[centre]))]  # drawn even when unused
            data.setdefault("provider", provider)
        return Opportunity.model_validate({**base, **data}, strict=False)

    def _title(self, route: str, extra_fi: str = "", extra_en: str = "") -> dict[str, str]:
        fi, en = _ROUTE_TITLES[route]
        return {"fi": f"{fi} {extra_fi}".strip()[:200], "en": f"{en} {extra_en}".strip()[:200]}

    def _occ_title(self, occ: WorldOccupation, prefix_fi: str, prefix_en: str) -> dict[str, str]:
        return {
            "fi": f"{prefix_fi}: {self._occ_label(occ.uri, 'fi')}"[:200],
            "en": f"{prefix_en}: {occ.label}"[:200],
        }

    def _literacy(self) -> dict[str, Any]:
        reach = "functional" if self.rng.random() < 0.5 else "basic"
        return {
            "kind": "training",
            "route": "literacy",
            "title": self._title("literacy"),
            "s2_support": True,
            "support_level": "medium",
            "intake": self._dated((1, 3, 5, 8, 10, 11)),
            "duration_weeks": float(self.rng.integers(20, 41)),
            **self._seats(10, 16),
            "completion": {"literacy_reached": reach, "language_reached": {"fi": "A1.2"}},
        }

    def _language(self) -> dict[str, Any]:
        entry = _LANG_ENTRY[self.draw.index(len(_LANG_ENTRY))]
        reach = min(entry + 2, len(CEFR_LEVELS) - 1)
        data: dict[str, Any] = {
            "kind": "training",
            "route": "language",
            "title": self._title(
                "language", f"{CEFR_LEVELS[entry]}–{CEFR_LEVELS[reach]}", f"{CEFR_LEVELS[entry]}–{CEFR_LEVELS[reach]}"
            ),
            "min_literacy": "basic",
            "intake": self._dated((1, 3, 5, 8, 10, 11)),
            "duration_weeks": float(self.rng.integers(10, 25)),
            **self._seats(14, 20),
            "completion": {"language_reached": {"fi": CEFR_LEVELS[reach]}},
            "rules": {"integration_period_only": bool(self.rng.random() < 0.3)},
        }
        if entry > 0:
            data["min_language"] = {"fi": CEFR_LEVELS[entry]}
        return data

    def _basic_skills(self) -> dict[str, Any]:
        return {
            "kind": "training",
            "route": "basic_skills",
            "title": self._title("basic_skills"),
            "s2_support": True,
            "min_literacy": "basic",
            "support_level": "medium",
            "intake": self._dated((1, 8)),
            "duration_weeks": 26.0,
            **self._seats(12, 18),
            "completion": {
                "isced_reached": 2,
                "digital_reached": 2,
                "literacy_reached": "functional",
                "language_reached": {"fi": "A2.1"},
            },
        }

    def _preparatory(self) -> dict[str, Any]:
        occ = self._pick(self.occ)
        return {
            "kind": "training",
            "route": "preparatory",
            "title": self._title("preparatory"),
            "sector": occ.sector,
            "s2_support": True,
            "min_language": {"fi": "A2.1"},
            "min_literacy": "basic",
            "intake": self._dated((1, 8)),
            "duration_weeks": float(self.rng.integers(20, 41)),
            **self._seats(12, 20),
            "rules": {"max_age": 29 if self.rng.random() < 0.5 else None},
            "completion": {"language_reached": {"fi": "B1.1"}, "skills_gained": self._sample(occ.essential, 1, 3)},
        }

    def _workshop(self) -> dict[str, Any]:
        occ = self._pick(self.occ)
        return {
            "kind": "training",
            "route": "workshop",
            "title": self._occ_title(occ, "Työpaja", "Workshop"),
            "occupation": {"esco_uri": occ.uri},
            "sector": occ.sector,
            "s2_support": True,
            "min_language": {"fi": "A1.3"},
            "support_level": "medium",
            "intake": {"continuous": True} if self.rng.random() < 0.6 else self._dated((1, 3, 5, 8, 10, 11)),
            "duration_weeks": float(self.rng.integers(8, 21)),
            **self._seats(8, 15),
            "required_skills": {"optional": self._sample(occ.essential, 1, 3)},
            "completion": {"skills_gained": self._sample(occ.essential, 3, 6), "leads_to": {"esco_uri": occ.uri}},
        }

    def _degree(self) -> dict[str, Any]:
        occ = self._pick(self.qual_occ)
        s2 = occ.sector in ("care_and_education", "services", "property_and_technology", "health", "cleaning") or (
            self.rng.random() < 0.3
        )
        return {
            "kind": "training",
            "route": "degree",
            "title": {
                "fi": self.tax.qualification_label(str(occ.qualification), "fi")[:200],
                "en": self.tax.qualification_label(str(occ.qualification), "en")[:200],
            },
            "occupation": {"esco_uri": occ.uri},
            "sector": occ.sector,
            "s2_support": s2,
            "min_language": {"fi": "B1.1" if not s2 else ("A2.2", "B1.1")[self.draw.index(2)]},
            "min_literacy": "functional",
            "min_isced": 1 if self.rng.random() < 0.5 else None,
            "intake": self._dated((1, 8)),
            "duration_weeks": float(self.rng.integers(52, 131)),
            **self._seats(15, 30),
            "needs_te_decision": bool(self.rng.random() < 0.4),
            "rules": {"entrance_test": True},
            "completion": {
                "skills_gained": self._sample(occ.essential, 6, 12),
                "isced_reached": 3,
                "qualification": occ.qualification,
                "leads_to": {"esco_uri": occ.uri},
            },
        }

    def _apprenticeship(self) -> dict[str, Any]:
        occ = self._pick(self.qual_occ)
        return {
            "kind": "training",
            "route": "apprenticeship",
            "title": self._occ_title(occ, "Oppisopimus", "Apprenticeship"),
            "occupation": {"esco_uri": occ.uri},
            "sector": occ.sector,
            "s2_support": bool(self.rng.random() < 0.5),
            "min_language": {"fi": "A2.2"},
            "min_literacy": "basic",
            "intake": {"continuous": True},
            "duration_weeks": float(self.rng.integers(52, 105)),
            **self._seats(1, 4),
            "rules": {"requires_work_permit": True},
            "needs_te_decision": True,
            "required_skills": {"optional": self._sample(occ.essential, 2, 4)},
            "completion": {
                "skills_gained": self._sample(occ.essential, 6, 12),
                "isced_reached": 3,
                "qualification": occ.qualification,
                "leads_to": {"esco_uri": occ.uri},
            },
        }

    def _rehabilitative(self) -> dict[str, Any]:
        return {
            "kind": "training",
            "route": "rehabilitative",
            "title": self._title("rehabilitative", "(5 vk)", "(5 weeks)"),
            "s2_support": True,
            "support_level": "high",
            "intake": self._dated((2, 4, 9, 11)),
            "duration_weeks": 5.0,
            **self._seats(8, 12),
            "rules": {"client_types": ("municipal", "te")},
            "completion": {"digital_reached": 1},
        }

    def _entrepreneurship(self) -> dict[str, Any]:
        return {
            "kind": "training",
            "route": "entrepreneurship",
            "title": self._title("entrepreneurship"),
            "sector": "business",
            "min_language": {"fi": "A2.2", "en": "B1.1"},
            "min_literacy": "functional",
            "intake": self._dated((2, 9)),
            "duration_weeks": float(self.rng.integers(10, 21)),
            **self._seats(10, 20),
            "completion": {"skills_gained": self._sample(self._pick(self.all_occ).optional, 1, 3)},
        }

    def _higher_education_bridge(self) -> dict[str, Any]:
        occ = self._pick(self.he_occ)
        return {
            "kind": "training",
            "route": "higher_education_bridge",
            "title": self._occ_title(occ, "Korkeakoulusilta", "Higher-education bridge"),
            "occupation": {"esco_uri": occ.uri},
            "sector": occ.sector,
            "min_language": {"fi": "B1.1", "en": "B2.1"},
            "min_literacy": "functional",
            "min_isced": 6,
            "requires_recognition": bool(self.rng.random() < 0.5),
            "intake": self._dated((1, 8)),
            "duration_weeks": float(self.rng.integers(30, 53)),
            **self._seats(15, 25),
            "completion": {
                "skills_gained": self._sample(occ.essential, 4, 8),
                "language_reached": {"fi": "B2.1"},
                "leads_to": {"esco_uri": occ.uri},
            },
        }

    def _job(self, kind: str, occ: WorldOccupation) -> dict[str, Any]:
        rng = self.rng
        employer = f"Työnantaja {int(rng.integers(100, 1000))} Oy"
        if kind == "work_trial":
            s2 = bool(rng.random() < 0.4)
            return {
                "kind": kind,
                "provider": employer,
                "title": self._occ_title(occ, "Työkokeilu", "Work trial"),
                "occupation": {"esco_uri": occ.uri},
                "sector": occ.sector,
                "required_skills": {
                    "essential": self._sample(occ.essential, 2, 4),
                    "optional": self._sample(occ.optional, 1, 3),
                },
                "min_language": {"fi": "A2.1"},
                "s2_support": s2,
                "intake": {"continuous": True},
                "duration_weeks": float(rng.integers(4, 13)),
                **self._seats(1, 3),
                "needs_te_decision": True,
                "rules": {"client_types": ("te",)} if rng.random() < 0.7 else {},
                "completion": {"skills_gained": self._sample(occ.essential, 1, 3)},
            }
        english_job = occ.sector == "ict" and rng.random() < 0.6
        fi_min = ("A2.2", "B1.1", "B1.1", "B1.2")[self.draw.index(4)]
        lang = {"en": "B2.1"} if english_job else {"fi": fi_min}
        intake: dict[str, Any] = {"continuous": True}
        if rng.random() < 0.35:
            month = int(rng.integers(9, 13))
            years = [*self.cohorts, *range(max(self.cohorts) + 1, max(self.cohorts) + 4)]
            intake = {"continuous": False, "dates": [date(y, month, 1) + timedelta(days=14) for y in years]}
        return {
            "kind": kind,
            "provider": employer,
            "title": self._occ_title(occ, "Työpaikka", "Vacancy"),
            "occupation": {"esco_uri": occ.uri},
            "sector": occ.sector,
            "required_skills": {
                "essential": self._sample(occ.essential, 4, 8),
                "optional": self._sample(occ.optional, 2, 6),
            },
            "min_language": lang,
            "s2_support": bool(rng.random() < 0.1),
            "min_literacy": "functional",
            "intake": intake,
            "duration_weeks": 52.0,
            **self._seats(1, 3),
            "pay_subsidy": bool(rng.random() < 0.25),
            "rules": {"requires_work_permit": True},
            "completion": {"skills_gained": self._sample(occ.essential, 1, 3)},
        }


def generate_catalogue(rng: np.random.Generator, n: int, cohorts: Sequence[int], tax: Taxonomy) -> list[Opportunity]:
    """Draw a catalogue of ``n`` items (at least one of every item type in every centre when ``n >= 60``)."""
    builder = _CatalogueBuilder(rng, tax, cohorts)
    centres = list(CENTRE_SHARES)
    per_centre = dict(zip(centres, quota_counts_for(n, centres), strict=True))
    types = list(_TYPE_WEIGHTS)
    items: list[Opportunity] = []
    with progress_bar(total=n, desc="opportunities") as bar:
        for centre in centres:
            m = int(per_centre[centre])
            guaranteed = types[:m]
            rest = [types[i] for i in quota(rng, list(_TYPE_WEIGHTS.values()), max(0, m - len(guaranteed)))]
            for item_type in sorted(guaranteed + rest, key=types.index):
                items.append(builder.build(f"op-{centre}-{len(items):05d}", centre, item_type))
            bar.update(m)
    return items


def quota_counts_for(n: int, centres: Sequence[str]) -> list[int]:
    """Catalogue items per centre, proportional to the centres' client shares."""
    return [int(c) for c in quota_counts([CENTRE_SHARES[c] for c in centres], n)]
