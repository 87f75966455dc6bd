"""Synthetic clients and their audit attributes, calibrated to domain.md §5 (see :mod:`training.world.calibrate`).

Marginals with a target are drawn by *ranked quota*: every client gets a latent score (noise plus effects of
other attributes), and the category shares are then cut from the sorted scores. Realised shares therefore hit
the targets up to rounding at any size, while attributes stay correlated in plausible ways (e.g. education with
literacy and Finnish level). Audit attributes (gender, mother tongue, country) are drawn first; observables may
correlate with them (as in life), but the truth never reads them (:mod:`training.world.truth`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import TypeAdapter

from features.centres import CENTRES
from features.language import CEFR_LEVELS
from features.records import AuditAttributes, ClientProfile
from features.taxonomy import Taxonomy
from training.world import calibrate as cal
from training.world.draws import Draws, cumulative
from training.world.occupations import demand_occupations, prior_occupations
from training.world.progress import progress

CENTRE_SHARES: Final[dict[str, float]] = {
    "helsinki": 0.35,
    "espoo": 0.15,
    "vantaa": 0.15,
    "tampere": 0.20,
    "turku": 0.15,
}

# (country ISO 3166 numeric, mother tongue ISO 639-1, share). The first block reproduces 000 §2 exactly
# (Arabic 42 %, Dari 10 % coded "fa", Somali 9 %, Kurdish 7 %, Russian 5 %; Iraq 36 %, Afghanistan 12 %,
# Somalia 9 %, Syria 9 %); the rest spreads 25 % over other origins so that 41 countries appear.
_ORIGINS: Final[tuple[tuple[str, str, float], ...]] = (
    ("368", "ar", 0.30),
    ("368", "ku", 0.06),
    ("760", "ar", 0.08),
    ("760", "ku", 0.01),
    ("004", "fa", 0.10),
    ("004", "ps", 0.02),
    ("706", "so", 0.09),
    ("818", "ar", 0.01),
    ("729", "ar", 0.01),
    ("504", "ar", 0.01),
    ("887", "ar", 0.005),
    ("434", "ar", 0.005),
    ("643", "ru", 0.03),
    ("804", "ru", 0.01),
    ("233", "ru", 0.01),
)
_OTHER_ORIGINS: Final[tuple[tuple[str, str], ...]] = (
    ("231", "am"),
    ("232", "ti"),
    ("792", "tr"),
    ("233", "et"),
    ("804", "uk"),
    ("764", "th"),
    ("704", "vi"),
    ("156", "zh"),
    ("608", "tl"),
    ("008", "sq"),
    ("050", "bn"),
    ("524", "ne"),
    ("356", "hi"),
    ("586", "ur"),
    ("566", "en"),
    ("288", "en"),
    ("180", "fr"),
    ("324", "fr"),
    ("384", "fr"),
    ("076", "pt"),
    ("724", "es"),
    ("170", "es"),
    ("616", "pl"),
    ("642", "ro"),
    ("100", "bg"),
    ("440", "lt"),
    ("428", "lv"),
    ("268", "ka"),
    ("031", "az"),
    ("860", "uz"),
    ("826", "en"),
)
_OTHER_SHARE: Final = 0.25
_LOW_EDUCATION_COUNTRIES: Final = frozenset({"004", "706", "232", "231"})
_HIGH_EDUCATION_COUNTRIES: Final = frozenset({"643", "804", "233", "364", "356", "156", "826", "616"})
_FINNIC_OR_NEAR: Final = frozenset({"et", "ru", "uk"})

# ISCED level -> share (0–2: 45 %).
_ISCED_SHARES: Final[dict[int, float]] = {0: 0.15, 1: 0.12, 2: 0.18, 3: 0.25, 4: 0.05, 6: 0.15, 7: 0.10}
# Finnish ordinal (0 = alle_A1.1 ... 10 = C1.1) -> share; 75 % below B1.1.
_FINNISH_SHARES: Final[dict[int, float]] = {
    0: 0.12,
    1: 0.12,
    2: 0.13,
    3: 0.13,
    4: 0.13,
    5: 0.12,
    6: 0.10,
    7: 0.07,
    8: 0.05,
    9: 0.02,
    10: 0.01,
}
_DIGITAL_SHARES: Final[dict[int, float]] = {0: 0.15, 1: 0.35, 2: 0.35, 3: 0.15}
_PATH_SHARES: Final[dict[str, float]] = {"education": 0.40, "either": 0.25, "work": 0.35}
_EDUCATION_FIELDS: Final = ("0112", "0413", "0511", "0618", "0715", "0732", "0811", "0913", "0923", "1013", "1015")
_TRAVEL_KM: Final = (15.0, 25.0, 40.0, 60.0)
_AUDIT_LIST: Final = TypeAdapter(list[AuditAttributes])


@dataclass(frozen=True)
class Population:
    """Clients, their audit attributes and cohorts (aligned lists)."""

    clients: list[ClientProfile]
    audit: list[AuditAttributes]
    cohort_of: dict[str, int]


def reference_date(cohort: int) -> date:
    """Reference (mapping) date of a cohort: 1 September of its year."""
    return date(cohort, 9, 1)


def quota(rng: np.random.Generator, shares: Sequence[float], n: int) -> npt.NDArray[np.intp]:
    """Category index per person with counts equal to ``shares * n`` up to rounding (largest remainder), shuffled."""
    counts = quota_counts(shares, n)
    out = np.repeat(np.arange(len(shares)), counts)
    rng.shuffle(out)
    return out


def quota_counts(shares: Sequence[float], n: int) -> npt.NDArray[np.intp]:
    """Counts per category summing to ``n``, proportional to ``shares`` (largest-remainder rounding)."""
    p = np.asarray(shares, dtype=np.float64)
    p = p / p.sum()
    raw = p * n
    counts = np.floor(raw).astype(np.intp)
    rest = n - int(counts.sum())
    if rest > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


def ranked_quota(score: npt.NDArray[np.float64], shares: Sequence[float]) -> npt.NDArray[np.intp]:
    """Cut categories from ascending scores: the lowest ``shares[0]`` get category 0, and so on."""
    counts = quota_counts(shares, len(score))
    order = np.argsort(score, kind="stable")
    out = np.empty(len(score), dtype=np.intp)
    out[order] = np.repeat(np.arange(len(shares)), counts)
    return out


def _origins() -> tuple[list[tuple[str, str]], list[float]]:
    pairs = [(c, m) for c, m, _ in _ORIGINS] + list(_OTHER_ORIGINS)
    shares = [s for _, _, s in _ORIGINS] + [_OTHER_SHARE / len(_OTHER_ORIGINS)] * len(_OTHER_ORIGINS)
    return pairs, shares


def _z(x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    x = x.astype(np.float64)
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def generate_population(rng: np.random.Generator, n: int, cohorts: Sequence[int], tax: Taxonomy) -> Population:
    """Draw ``n`` clients spread over the five centres and the given cohorts."""
    centres = list(CENTRE_SHARES)
    centre = np.array(centres)[quota(rng, list(CENTRE_SHARES.values()), n)]
    weights = np.linspace(1.0, 1.0 + 0.2 * (len(cohorts) - 1), len(cohorts))  # growing intake (436 -> 793)
    cohort = np.asarray(cohorts)[quota(rng, list(weights), n)]
    gender = np.array(list(cal.GENDER_SHARES))[quota(rng, list(cal.GENDER_SHARES.values()), n)]
    pairs, shares = _origins()
    origin = quota(rng, shares, n)
    country = np.array([pairs[i][0] for i in origin])
    tongue = np.array([pairs[i][1] for i in origin])
    female = gender == "female"
    low_c = np.isin(country, list(_LOW_EDUCATION_COUNTRIES))
    high_c = np.isin(country, list(_HIGH_EDUCATION_COUNTRIES))

    age = np.clip(np.round(18.0 + rng.gamma(2.6, 6.2, n)), 17, 64).astype(int)
    years_in_fi = np.round(rng.exponential(2.5, n), 1)
    edu_score = rng.normal(size=n) - 0.7 * low_c + 0.7 * high_c - 0.2 * female
    isced = np.array(list(_ISCED_SHARES))[ranked_quota(edu_score, list(_ISCED_SHARES.values()))]
    edu_z = _z(isced)
    lit_score = 1.3 * edu_z + rng.normal(size=n) - 0.3 * low_c
    literacy = ranked_quota(lit_score, list(cal.LITERACY_SHARES.values()))  # 0 none, 1 basic, 2 functional
    fi_score = (
        0.6 * edu_z + 0.8 * literacy + 0.35 * np.minimum(years_in_fi, 6) + 0.8 * np.isin(tongue, list(_FINNIC_OR_NEAR))
    ) + rng.normal(size=n)
    finnish = np.array(list(_FINNISH_SHARES))[ranked_quota(fi_score, list(_FINNISH_SHARES.values()))]
    english = np.clip(np.round(2.2 * edu_z + 5 + rng.normal(0, 1.5, n)), 0, 10).astype(int)
    english[tongue == "en"] = 11
    digital = np.array(list(_DIGITAL_SHARES))[
        ranked_quota(edu_z + 0.5 * literacy + rng.normal(size=n), [0.15, 0.35, 0.35, 0.15])
    ]
    sup_score = -0.8 * edu_z - 0.6 * literacy + 0.02 * (age - 34) + 0.3 * (years_in_fi > 5) + rng.normal(size=n)
    support = np.array(list(cal.SUPPORT_SHARES))[ranked_quota(sup_score, list(cal.SUPPORT_SHARES.values()))]
    mun_score = 0.8 * (support == "high") + 0.8 * (age > 55) + 0.5 * female + rng.normal(size=n)
    client_type = np.array(["te", "municipal"])[ranked_quota(mun_score, list(cal.CLIENT_TYPE_SHARES.values()))]
    consent = {k: ranked_quota(rng.normal(size=n), [1 - v, v]).astype(bool) for k, v in cal.CONSENT_SHARES.items()}
    path_score = 0.04 * (age - 34) - 0.5 * edu_z * (isced < 3) + rng.normal(size=n)
    path = np.array(list(_PATH_SHARES))[ranked_quota(path_score, list(_PATH_SHARES.values()))]
    columns = {
        "centre": centre,
        "cohort": cohort,
        "age": age,
        "years_in_fi": years_in_fi,
        "isced": isced,
        "literacy": literacy,
        "finnish": finnish,
        "english": english,
        "digital": digital,
        "support": support,
        "client_type": client_type,
        "path": path,
        "female": female,
        **{f"consent_{k}": v for k, v in consent.items()},
    }
    builder = _ClientBuilder(rng, tax)
    ids = [f"cl-{i:06d}" for i in range(n)]
    names = list(columns)
    rows = zip(*(columns[k].tolist() for k in names), strict=True)
    clients = [
        builder.build(cid, dict(zip(names, row, strict=True)))
        for cid, row in progress(zip(ids, rows, strict=True), total=n, desc="clients")
    ]
    audit = _AUDIT_LIST.validate_python(
        [
            {"client_id": cid, "gender": g, "mother_tongue": t, "country_of_origin": c}
            for cid, g, t, c in zip(ids, gender.tolist(), tongue.tolist(), country.tolist(), strict=True)
        ]
    )
    cohort_of = dict(zip(ids, cohort.tolist(), strict=True))
    return Population(clients, audit, cohort_of)


class _ClientBuilder:
    """Turns one row of drawn attributes into a validated ClientProfile (prior jobs, skills, goals, place)."""

    def __init__(self, rng: np.random.Generator, tax: Taxonomy) -> None:
        self.rng = rng
        self.draw = Draws(rng)
        self.tax = tax
        self.demand = demand_occupations(tax)
        self.prior = prior_occupations(tax)
        w = np.array([o.weight for o in self.prior])
        self.prior_p = w / w.sum()
        self.prior_cdf = cumulative(self.prior_p)
        dw = np.array([o.weight for o in self.demand])
        self.demand_p = dw / dw.sum()
        self.demand_cdf = cumulative(self.demand_p)
        self.near = {c: tax.municipalities_near(CENTRES[c].municipality, 35.0) for c in CENTRES}
        self.by_sector: dict[str, list[int]] = {}
        for j, o in enumerate(self.demand):
            self.by_sector.setdefault(o.sector, []).append(j)
        self.cdf = {
            "n_prior": cumulative([0.35, 0.45, 0.20]),
            "recognition": cumulative([0.45, 0.15, 0.15, 0.25]),
            "n_targets": cumulative([0.5, 0.35, 0.15]),
            "hours": cumulative([0.15, 0.2, 0.65]),
            "travel": cumulative([0.2, 0.35, 0.3, 0.15]),
        }

    def build(self, cid: str, row: dict[str, Any]) -> ClientProfile:
        rng, draw = self.rng, self.draw
        ref = reference_date(int(row["cohort"]))
        mapped = ref - timedelta(days=int(rng.integers(0, 60)))
        age = int(row["age"])
        if row["centre"] != "helsinki":
            age = max(age, 18)
        isced = int(row["isced"])
        n_prior = draw.weighted(self.cdf["n_prior"]) if age > 20 else int(rng.random() < 0.3)
        prior_idx = draw.weighted_sample(self.prior_p, self.prior_cdf, n_prior) if n_prior else []
        priors, skills, seen = [], [], set()
        for j in prior_idx:
            occ = self.prior[int(j)]
            years_done = float(np.float64(rng.uniform(0.5, 12)).round(1))  # same rounding as np.round, cheaper
            priors.append({"occupation": {"esco_uri": occ.uri}, "years": years_done})
            k_ess = min(len(occ.essential), int(rng.integers(3, 10)))
            k_opt = min(len(occ.optional), int(rng.integers(0, 5)))
            ess, opt = occ.essential, occ.optional
            for uri in [
                *[ess[j] for j in draw.sample(len(ess), k_ess)],
                *[opt[j] for j in draw.sample(len(opt), k_opt)],
            ]:
                if uri not in seen:
                    seen.add(uri)
                    ev = "demonstrated" if rng.random() < 0.3 else "self_reported"
                    skills.append({"uri": uri, "level": int(rng.integers(1, 5)), "evidence": ev})
        education = []
        if isced > 0:
            rec = ("none", "pending", "partial", "recognised")[draw.weighted(self.cdf["recognition"])]
            field = _EDUCATION_FIELDS[draw.index(len(_EDUCATION_FIELDS))] if isced >= 3 else None
            education.append({"isced_level": isced, "field": field, "recognition": rec if isced >= 3 else "not_needed"})
        languages = [self._lang("fi", int(row["finnish"]), mapped)]
        if int(row["english"]) >= 3:
            languages.append(self._lang("en", min(int(row["english"]), 13), mapped, source="self"))
        goals = self._goals(prior_idx, str(row["path"]), ref)
        centre = str(row["centre"])
        near = self.near[centre]
        mun = CENTRES[centre].municipality if rng.random() < 0.55 else near[draw.index(len(near))]
        childcare = bool(rng.random() < (0.35 if row["female"] and age < 42 else 0.08))
        years = float(row["years_in_fi"])
        data: dict[str, Any] = {
            "client_id": cid,
            "centre": centre,
            "age": age,
            "skills": skills,
            "prior_occupations": priors,
            "education": education,
            "languages": languages,
            "literacy": ("none", "basic", "functional")[int(row["literacy"])],
            "digital_skills": int(row["digital"]),
            "goals": goals,
            "constraints": {
                "municipality": mun,
                "max_travel_km": _TRAVEL_KM[draw.weighted(self.cdf["travel"])],
                "childcare_need": childcare,
            },
            "support_need": str(row["support"]),
            "status": {
                "client_type": str(row["client_type"]),
                "in_integration_period": years < 3.0,
                "work_permit": bool(rng.random() < 0.96),
                "first_permit_on": (ref - timedelta(days=int(years * 365))).isoformat(),
            },
            "consent": {
                "matching": bool(row["consent_matching"]),
                "share_with_coordinators": bool(row["consent_share_with_coordinators"]),
                "model_training": bool(row["consent_model_training"]),
            },
            "mapped_on": mapped.isoformat(),
        }
        return ClientProfile.model_validate(data, strict=False)

    def _lang(self, code: str, ordinal: int, on: date, source: str = "teacher") -> dict[str, Any]:
        rec: dict[str, Any] = {
            "language": code,
            "level": CEFR_LEVELS[ordinal],
            "source": source,
            "assessed_on": on.isoformat(),
        }
        if code == "fi" and ordinal >= 4 and self.rng.random() < 0.2:
            rec["source"] = "yki"
            rec["yki_grade"] = min(6, 2 + (ordinal - 4) // 2)
        return rec

    def _goals(self, prior_idx: Sequence[Any], path: str, ref: date) -> dict[str, Any]:
        rng, draw = self.rng, self.draw
        targets: list[int] = []
        n_targets = (1, 2, 3)[draw.weighted(self.cdf["n_targets"])]
        for j in prior_idx:
            sector = self.prior[int(j)].sector
            if sector in self.by_sector and rng.random() < 0.6:
                same = self.by_sector[sector]
                targets.append(same[draw.index(len(same))])
        while len(set(targets)) < n_targets:
            targets.append(draw.weighted(self.demand_cdf))
        uniq = list(dict.fromkeys(targets))[:n_targets]
        start = ref + timedelta(weeks=int(rng.integers(0, 9))) if rng.random() < 0.6 else None
        return {
            "target_occupations": [{"esco_uri": self.demand[j].uri} for j in uniq],
            "preferred_path": path,
            "earliest_start": start.isoformat() if start else None,
            "hours_per_week": (20, 30, 37)[draw.weighted(self.cdf["hours"])],
        }
