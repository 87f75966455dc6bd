"""The shipped vocabulary: ESCO v1.1.1 skills and occupations (en + fi labels), ISCO-08, OPH code lists.

Files are built by ``scripts/build_taxonomy.py`` from ``../shared/data`` and read once per process
(``default_taxonomy()``). URIs are kept in full form at the API (``http://data.europa.eu/esco/skill/<uuid>``).
ESCO's English alternative labels (``labels.json.gz``) are read only when first asked for: only the occupation
coder needs them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SKILL_PREFIX = "http://data.europa.eu/esco/skill/"
OCCUPATION_PREFIX = "http://data.europa.eu/esco/occupation/"
DATA_DIR = Path(__file__).parent / "data" / "taxonomy"
_EARTH_KM = 6371.0
_ROAD_FACTOR = 1.25  # great-circle to road distance
_UNKNOWN_KM = 400.0


def _load(name: str) -> Any:
    with gzip.open(DATA_DIR / name, "rb") as f:
        return json.loads(f.read())


class Taxonomy:
    """Code lookups, labels, occupation–skill relations and municipality distances."""

    def __init__(self) -> None:
        """Read the shipped files."""
        skills = _load("skills.json.gz")
        occupations = _load("occupations.json.gz")
        codes = _load("codes.json.gz")
        self.version: str = codes["version"]
        self.skill_uris: list[str] = [SKILL_PREFIX + s[0] for s in skills]
        self.skill_index: dict[str, int] = {u: i for i, u in enumerate(self.skill_uris)}
        self._skill_labels = {"en": [s[1] for s in skills], "fi": [s[2] or s[1] for s in skills]}
        self.skill_types: list[str] = [s[3] for s in skills]
        self.occupation_uris: list[str] = [OCCUPATION_PREFIX + o[0] for o in occupations]
        self.occupation_index: dict[str, int] = {u: i for i, u in enumerate(self.occupation_uris)}
        self._occ_isco: list[str] = [o[1] for o in occupations]
        self._occ_labels = {"en": [o[2] for o in occupations], "fi": [o[3] or o[2] for o in occupations]}
        self._occ_ess: list[list[int]] = [o[4] for o in occupations]
        self._occ_opt: list[list[int]] = [o[5] for o in occupations]
        self._isco: dict[str, list[str]] = codes["isco"]
        self._mun: dict[str, list[Any]] = codes["municipalities"]
        self._languages: dict[str, list[str]] = codes["languages"]
        self._countries: dict[str, list[str]] = codes["countries"]
        self._quals: dict[str, list[str]] = codes["qualifications"]
        self._fields: dict[str, str] = codes["education_fields"]
        self._lang_skill: dict[str, str] = codes["language_skills"]
        self.municipality_codes: list[str] = sorted(self._mun)
        self.municipalities_with_coordinates: list[str] = sorted(c for c, m in self._mun.items() if m[4])
        self.qualification_codes: list[str] = sorted(self._quals)
        self._mun_pos = {c: i for i, c in enumerate(self.municipality_codes)}
        coords = np.array([m[3] if m[3] else (np.nan, np.nan) for m in (self._mun[c] for c in self.municipality_codes)])
        self._lat = np.radians(coords[:, 0].astype(np.float64))
        self._lon = np.radians(coords[:, 1].astype(np.float64))

    # -- membership ---------------------------------------------------------------------------------------------
    def has_skill(self, uri: str) -> bool:
        """Whether ``uri`` is an ESCO v1.1.1 skill or knowledge concept."""
        return uri in self.skill_index

    def has_occupation(self, uri: str) -> bool:
        """Whether ``uri`` is an ESCO v1.1.1 occupation."""
        return uri in self.occupation_index

    def has_isco(self, code: str) -> bool:
        """Whether ``code`` is an ISCO-08 group (1 to 4 digits)."""
        return code in self._isco

    def has_language(self, code: str) -> bool:
        """Whether ``code`` is in the OPH language code list (ISO 639-1, lower case)."""
        return code in self._languages and code.isalpha()

    def has_municipality(self, code: str) -> bool:
        """Whether ``code`` is a municipality code of the OPH list."""
        return code in self._mun

    def has_country(self, code: str) -> bool:
        """Whether ``code`` is a country code (ISO 3166 numeric) of the OPH list."""
        return code in self._countries

    def has_education_field(self, code: str) -> bool:
        """Whether ``code`` is a field of the Finnish education classification 2016."""
        return code in self._fields

    def has_qualification(self, code: str) -> bool:
        """Whether ``code`` is a vocational qualification code of the OPH list."""
        return code in self._quals

    # -- labels and relations -----------------------------------------------------------------------------------
    @cached_property
    def _alt_labels(self) -> dict[str, list[list[str]]]:
        labels: dict[str, list[list[str]]] = _load("labels.json.gz")
        if len(labels["occupations"]) != len(self.occupation_uris) or len(labels["skills"]) != len(self.skill_uris):
            raise ValueError(
                "labels.json.gz does not match the shipped taxonomy: rebuild with scripts/build_taxonomy.py"
            )
        return labels

    def occupation_alt_labels(self, uri: str) -> list[str]:
        """ESCO's English alternative and hidden labels of an occupation (some are Finnish spellings)."""
        return self._alt_labels["occupations"][self.occupation_index[uri]]

    def skill_alt_labels(self, uri: str) -> list[str]:
        """ESCO's English alternative labels of a skill, up to four words each."""
        return self._alt_labels["skills"][self.skill_index[uri]]

    def isco_of_occupation(self, uri: str) -> str:
        """The 4-digit ISCO-08 group of an ESCO occupation."""
        return self._occ_isco[self.occupation_index[uri]]

    def skill_label(self, uri: str, lang: str = "en") -> str:
        """Preferred label of a skill in ``fi`` or ``en`` (``sv`` falls back to English)."""
        return self._skill_labels["fi" if lang == "fi" else "en"][self.skill_index[uri]]

    def occupation_label(self, uri: str, lang: str = "en") -> str:
        """Preferred label of an occupation in ``fi`` or ``en`` (``sv`` falls back to English)."""
        return self._occ_labels["fi" if lang == "fi" else "en"][self.occupation_index[uri]]

    def isco_label(self, code: str, lang: str = "en") -> str:
        """Label of an ISCO-08 group in ``fi`` or ``en``."""
        fi, en = self._isco[code]
        return fi if lang == "fi" and fi else en

    def occupation_skills(self, uri: str) -> tuple[list[str], list[str]]:
        """Essential and optional skill URIs of an occupation (ESCO relations)."""
        i = self.occupation_index[uri]
        return [self.skill_uris[s] for s in self._occ_ess[i]], [self.skill_uris[s] for s in self._occ_opt[i]]

    def occupations_in_isco(self, prefix: str) -> list[str]:
        """ESCO occupation URIs whose ISCO group starts with ``prefix``."""
        return [u for u, c in zip(self.occupation_uris, self._occ_isco, strict=True) if c.startswith(prefix)]

    def language_skill_uri(self, lang: str) -> str | None:
        """The ESCO knowledge concept for a language (fi, sv, en), if any."""
        s = self._lang_skill.get(lang)
        return SKILL_PREFIX + s if s else None

    def qualification_label(self, code: str, lang: str = "fi") -> str:
        """Name of a vocational qualification in fi, sv or en (falls back to Finnish)."""
        fi, sv, en = self._quals[code][:3]
        return {"fi": fi, "sv": sv or fi, "en": en or fi}.get(lang, fi)

    def municipality_name(self, code: str, lang: str = "fi") -> str:
        """Name of a municipality in fi or sv."""
        fi, sv = self._mun[code][:2]
        return sv if lang == "sv" and sv else fi

    def municipality_region(self, code: str) -> str:
        """The region (maakunta) code of a municipality, or an empty string."""
        return str(self._mun[code][2] or "")

    # -- distances ----------------------------------------------------------------------------------------------
    def distance_matrix(self, a: Sequence[str], b: Sequence[str]) -> npt.NDArray[np.float32]:
        """Approximate road distance in km between municipalities (haversine × 1.25; unknown → 400 km)."""
        ia = np.array([self._mun_pos.get(c, -1) for c in a], dtype=np.int64)
        ib = np.array([self._mun_pos.get(c, -1) for c in b], dtype=np.int64)
        lat1, lon1 = self._lat[ia][:, None], self._lon[ia][:, None]
        lat2, lon2 = self._lat[ib][None, :], self._lon[ib][None, :]
        h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
        d = 2 * _EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))) * _ROAD_FACTOR
        d = np.where(np.isnan(d), _UNKNOWN_KM, d)
        d[(ia[:, None] < 0) | (ib[None, :] < 0)] = _UNKNOWN_KM
        same = np.asarray(a, dtype=object)[:, None] == np.asarray(b, dtype=object)[None, :]
        d[same] = 0.0
        return d.astype(np.float32)

    def distance_km(self, a: str, b: str) -> float:
        """Approximate road distance in km between two municipalities."""
        return float(self.distance_matrix([a], [b])[0, 0])

    def municipalities_near(self, centre_municipality: str, km: float) -> list[str]:
        """Municipalities with their own coordinates within ``km`` of a municipality."""
        d = self.distance_matrix([centre_municipality], self.municipalities_with_coordinates)[0]
        return [c for c, x in zip(self.municipalities_with_coordinates, d, strict=True) if x <= km]


@cache
def default_taxonomy() -> Taxonomy:
    """The process-wide taxonomy (read once)."""
    return Taxonomy()
