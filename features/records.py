"""Domain records: ClientProfile, Opportunity and their parts (pydantic v2, strict, no free text about people).

Every code is checked against the shipped taxonomy (ESCO v1.1.1, ISCO-08, OPH code lists); an unknown code is
rejected with a message naming the field and the code. Audit-only attributes (gender, mother tongue, country
of origin) live in :class:`AuditAttributes`, a separate record that the feature pipeline does not accept.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, field_validator, model_validator

from features.centres import CENTRES
from features.language import CefrLevel, LanguageSkillName, level_from_yki, level_ordinal


# Dates arrive as ISO strings in JSON bodies; everything else is strict (no "5" -> 5, no 1.0 -> True).
def iso_text_only(value: object) -> object:
    """Dates come as ISO 8601 strings (or date objects), never as numbers."""
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date string such as 2026-09-01, not a number")
    return value


IsoDate = Annotated[date, Strict(False), BeforeValidator(iso_text_only)]

ClientId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{3,63}$", description="Pseudonymous id.")]
OpportunityId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")]
EscoSkillUri = Annotated[str, Field(pattern=r"^http://data\.europa\.eu/esco/skill/[0-9a-f-]{36}$")]
EscoOccupationUri = Annotated[str, Field(pattern=r"^http://data\.europa\.eu/esco/occupation/[0-9a-f-]{36}$")]
IscoCode = Annotated[str, Field(pattern=r"^[0-9]{1,4}$")]
MunicipalityCode = Annotated[str, Field(pattern=r"^[0-9]{3}$")]
LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2}$", description="ISO 639-1, lower case.")]

# Each vocabulary is written once, as a Literal type; its tuple (in that order) is derived from it.
Kind = Literal["training", "work_trial", "vacancy"]
KINDS: tuple[Kind, ...] = get_args(Kind)
Route = Literal[
    "literacy",
    "language",
    "basic_skills",
    "preparatory",
    "workshop",
    "degree",
    "apprenticeship",
    "rehabilitative",
    "entrepreneurship",
    "higher_education_bridge",
]
ROUTES: tuple[Route, ...] = get_args(Route)
Literacy = Literal["none", "basic", "functional"]
LITERACY_LEVELS: tuple[Literacy, ...] = get_args(Literacy)
SupportLevel = Literal["low", "medium", "high"]
SUPPORT_LEVELS: tuple[SupportLevel, ...] = get_args(SupportLevel)
Evidence = Literal["self_reported", "demonstrated", "certified"]
Sector = Literal[
    "care_and_education",
    "services",
    "property_and_technology",
    "hospitality",
    "cleaning",
    "logistics",
    "construction",
    "retail",
    "ict",
    "business",
    "health",
    "manufacturing",
    "agriculture",
    "general",
]
SECTORS: tuple[Sector, ...] = get_args(Sector)


if TYPE_CHECKING:
    from features.taxonomy import Taxonomy


def _tax() -> Taxonomy:  # local import keeps module import free of file reads
    from features.taxonomy import default_taxonomy

    return default_taxonomy()


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _check_language(code: str) -> str:
    if not _tax().has_language(code):
        raise ValueError(f"unknown language code {code!r} (ISO 639-1, lower case)")
    return code


def _check_municipality(code: str) -> str:
    if not _tax().has_municipality(code):
        raise ValueError(f"unknown municipality code {code!r}")
    return code


class OccupationRef(_Record):
    """An occupation named by ESCO URI or ISCO-08 code (1–4 digits); with a URI the ISCO code is derived."""

    esco_uri: EscoOccupationUri | None = None
    isco: IscoCode | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_isco(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("esco_uri") and not data.get("isco"):
            uri = data["esco_uri"]
            tax = _tax()
            if isinstance(uri, str) and tax.has_occupation(uri):
                data = {**data, "isco": tax.isco_of_occupation(uri)}
        return data

    @model_validator(mode="after")
    def _check(self) -> OccupationRef:
        tax = _tax()
        if self.esco_uri is None and self.isco is None:
            raise ValueError("give esco_uri or isco")
        if self.esco_uri is not None and not tax.has_occupation(self.esco_uri):
            raise ValueError(f"unknown ESCO occupation {self.esco_uri!r}")
        if self.isco is not None and not tax.has_isco(self.isco):
            raise ValueError(f"unknown ISCO-08 code {self.isco!r}")
        if self.esco_uri is not None and self.isco is not None:
            derived = tax.isco_of_occupation(self.esco_uri)
            if not derived.startswith(self.isco):
                raise ValueError(f"ISCO-08 code {self.isco!r} does not match {self.esco_uri!r} ({derived})")
        return self


class SkillClaim(_Record):
    """One mapped competence: an ESCO skill with a level 1–4 and how it was evidenced."""

    uri: EscoSkillUri
    level: int = Field(ge=1, le=4)
    evidence: Evidence = "self_reported"

    @field_validator("uri")
    @classmethod
    def _known(cls, uri: str) -> str:
        if not _tax().has_skill(uri):
            raise ValueError(f"unknown ESCO skill {uri!r}")
        return uri


class PriorOccupation(_Record):
    """Work done before, by occupation and years."""

    occupation: OccupationRef
    years: float = Field(ge=0, le=60)


class Education(_Record):
    """Completed education: ISCED level, field (Koulutusluokitus 2016 / ISCED-F) and recognition in Finland."""

    isced_level: int = Field(ge=0, le=8)
    field: str | None = Field(default=None, pattern=r"^[0-9]{2,4}$")
    recognition: Literal["not_needed", "none", "pending", "partial", "recognised"] = "none"

    @field_validator("field")
    @classmethod
    def _known_field(cls, code: str | None) -> str | None:
        if code is not None and not _tax().has_education_field(code):
            raise ValueError(f"unknown education field code {code!r}")
        return code


class LanguageSkill(_Record):
    """A language level on the Finnish scale, optionally per skill, with its source and date.

    With ``source="yki"`` give ``yki_grade`` (1–6); the level is then the lowest sub-level of that grade's band
    unless a level is also given.
    """

    language: LanguageCode
    level: CefrLevel | None = None
    per_skill: dict[LanguageSkillName, CefrLevel] = Field(default_factory=dict)
    source: Literal["yki", "teacher", "self", "estimate"] = "teacher"
    yki_grade: int | None = Field(default=None, ge=1, le=6)
    assessed_on: IsoDate | None = None

    @field_validator("language")
    @classmethod
    def _lang(cls, code: str) -> str:
        return _check_language(code)

    @model_validator(mode="after")
    def _resolve(self) -> LanguageSkill:
        if self.source == "yki" and self.yki_grade is None:
            raise ValueError("yki_grade is required when source is 'yki'")
        if self.level is None:
            if self.yki_grade is None:
                raise ValueError("give level, or yki_grade with source 'yki'")
            object.__setattr__(self, "level", level_from_yki(self.yki_grade))
        return self

    @property
    def effective_level(self) -> str:
        """The overall level (always set after validation)."""
        assert self.level is not None
        return self.level

    def skill_level(self, skill: str) -> str:
        """Level for one skill (speaking, listening, reading, writing), falling back to the overall level."""
        return self.per_skill.get(skill, self.effective_level)  # type: ignore[call-overload]

    @property
    def is_uncertain(self) -> bool:
        """Self-reported and estimated levels are treated as uncertain (domain.md §9.3)."""
        return self.source in ("self", "estimate")


class Goals(_Record):
    """The client's own goals."""

    target_occupations: list[OccupationRef] = Field(default_factory=list, max_length=10)
    preferred_path: Literal["work", "education", "either"] = "either"
    earliest_start: IsoDate | None = None
    hours_per_week: int = Field(default=37, ge=0, le=40)


class Constraints(_Record):
    """Where and how the client can take part."""

    municipality: MunicipalityCode
    max_travel_km: float = Field(default=30.0, ge=0, le=500)
    childcare_need: bool = False

    @field_validator("municipality")
    @classmethod
    def _mun(cls, code: str) -> str:
        return _check_municipality(code)


class AdministrativeStatus(_Record):
    """Administrative facts that gate services."""

    client_type: Literal["te", "municipal"] = "te"
    in_integration_period: bool = False
    work_permit: bool = True
    first_permit_on: IsoDate | None = None


class Consent(_Record):
    """Consent per purpose (domain.md §9.8); each use of personal data needs the matching one."""

    matching: bool = False
    share_with_coordinators: bool = False
    model_training: bool = False


class ClientProfile(_Record):
    """A client's competence-mapping result, language, goals, constraints and consents (pseudonymous)."""

    client_id: ClientId
    centre: str
    age: int = Field(ge=15, le=99)
    skills: list[SkillClaim] = Field(default_factory=list, max_length=300)
    prior_occupations: list[PriorOccupation] = Field(default_factory=list, max_length=30)
    education: list[Education] = Field(default_factory=list, max_length=10)
    languages: list[LanguageSkill] = Field(default_factory=list, max_length=10)
    literacy: Literacy = "functional"
    digital_skills: int = Field(default=1, ge=0, le=3)
    goals: Goals = Field(default_factory=Goals)
    constraints: Constraints
    support_need: SupportLevel = "medium"
    status: AdministrativeStatus = Field(default_factory=AdministrativeStatus)
    consent: Consent = Field(default_factory=Consent)
    mapped_on: IsoDate | None = None

    @field_validator("centre")
    @classmethod
    def _centre(cls, centre: str) -> str:
        if centre not in CENTRES:
            raise ValueError(f"unknown centre {centre!r}: one of {', '.join(CENTRES)}")
        return centre

    @model_validator(mode="after")
    def _unique(self) -> ClientProfile:
        uris = [s.uri for s in self.skills]
        if len(uris) != len(set(uris)):
            raise ValueError("skills: each ESCO skill may appear once")
        langs = [lang.language for lang in self.languages]
        if len(langs) != len(set(langs)):
            raise ValueError("languages: each language may appear once")
        return self

    def language(self, code: str) -> LanguageSkill | None:
        """The client's record for one language, if any."""
        return next((lang for lang in self.languages if lang.language == code), None)

    def language_ordinal(self, code: str) -> int:
        """Ordinal level of a language (0 = alle_A1.1 when unknown)."""
        rec = self.language(code)
        return level_ordinal(rec.effective_level) if rec is not None else 0

    @property
    def highest_isced(self) -> int:
        """Highest completed ISCED level (0 when none recorded)."""
        return max((e.isced_level for e in self.education), default=0)


class AuditAttributes(_Record):
    """Audit-only attributes: never model inputs, used only to audit exposure and quality per group."""

    client_id: ClientId
    gender: Literal["female", "male", "other", "unknown"] = "unknown"
    mother_tongue: LanguageCode | None = None
    country_of_origin: str | None = Field(default=None, pattern=r"^[0-9]{3}$")

    @field_validator("mother_tongue")
    @classmethod
    def _lang(cls, code: str | None) -> str | None:
        return None if code is None else _check_language(code)

    @field_validator("country_of_origin")
    @classmethod
    def _country(cls, code: str | None) -> str | None:
        if code is not None and not _tax().has_country(code):
            raise ValueError(f"unknown country code {code!r} (ISO 3166-1 numeric)")
        return code


class LocalizedText(_Record):
    """A title in Finnish, with optional Swedish and English."""

    fi: str = Field(min_length=1, max_length=200)
    sv: str | None = Field(default=None, max_length=200)
    en: str | None = Field(default=None, max_length=200)

    def get(self, lang: str) -> str:
        """Text in ``lang`` (fi/sv/en), falling back to English, then Finnish."""
        value = {"fi": self.fi, "sv": self.sv, "en": self.en}.get(lang)
        return value or self.en or self.fi


class RequiredSkills(_Record):
    """ESCO skills an opportunity needs (essential) or values (optional)."""

    essential: list[EscoSkillUri] = Field(default_factory=list, max_length=200)
    optional: list[EscoSkillUri] = Field(default_factory=list, max_length=400)

    @field_validator("essential", "optional")
    @classmethod
    def _known(cls, uris: list[str]) -> list[str]:
        tax = _tax()
        for uri in uris:
            if not tax.has_skill(uri):
                raise ValueError(f"unknown ESCO skill {uri!r}")
        if len(uris) != len(set(uris)):
            raise ValueError("each ESCO skill may appear once")
        return uris


class Intake(_Record):
    """When people can start: continuous admission or fixed intake dates (sorted)."""

    continuous: bool = False
    dates: list[IsoDate] = Field(default_factory=list, max_length=60)

    @model_validator(mode="after")
    def _check(self) -> Intake:
        if not self.continuous and not self.dates:
            raise ValueError("dates: give at least one intake date, or set continuous")
        if self.dates != sorted(self.dates):
            raise ValueError("dates: intake dates must be in ascending order")
        return self

    def next_start(self, on: date) -> date | None:
        """First possible start on or after ``on`` (``on`` itself for continuous admission)."""
        if self.continuous:
            return on
        return next((d for d in self.dates if d >= on), None)


class ItemRules(_Record):
    """Hard rules of one opportunity (on top of the centre's rules)."""

    min_age: int | None = Field(default=None, ge=15, le=99)
    max_age: int | None = Field(default=None, ge=15, le=99)
    requires_work_permit: bool = False
    client_types: Annotated[tuple[Literal["te", "municipal"], ...], Strict(False)] = ("te", "municipal")
    entrance_test: bool = False
    integration_period_only: bool = False

    @model_validator(mode="after")
    def _ages(self) -> ItemRules:
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age must not exceed max_age")
        return self


class Completion(_Record):
    """What completing the opportunity gives, so that steps chain into paths."""

    skills_gained: list[EscoSkillUri] = Field(default_factory=list, max_length=200)
    language_reached: dict[LanguageCode, CefrLevel] = Field(default_factory=dict)
    literacy_reached: Literacy | None = None
    digital_reached: int | None = Field(default=None, ge=0, le=3)
    isced_reached: int | None = Field(default=None, ge=0, le=8)
    qualification: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    leads_to: OccupationRef | None = None

    @field_validator("skills_gained")
    @classmethod
    def _known(cls, uris: list[str]) -> list[str]:
        tax = _tax()
        for uri in uris:
            if not tax.has_skill(uri):
                raise ValueError(f"unknown ESCO skill {uri!r}")
        return uris

    @field_validator("qualification")
    @classmethod
    def _qual(cls, code: str | None) -> str | None:
        if code is not None and not _tax().has_qualification(code):
            raise ValueError(f"unknown vocational qualification code {code!r}")
        return code


class Opportunity(_Record):
    """A training, work trial or vacancy in a centre's catalogue."""

    opportunity_id: OpportunityId
    kind: Kind
    route: Route | None = None
    centre: str
    provider: str = Field(min_length=1, max_length=120)
    title: LocalizedText
    occupation: OccupationRef | None = None
    sector: Sector = "general"
    required_skills: RequiredSkills = Field(default_factory=RequiredSkills)
    min_language: dict[LanguageCode, CefrLevel] = Field(default_factory=dict)
    s2_support: bool = False
    min_literacy: Literacy = "none"
    min_digital: int = Field(default=0, ge=0, le=3)
    min_isced: int | None = Field(default=None, ge=0, le=8)
    requires_recognition: bool = False
    municipality: MunicipalityCode
    intake: Intake
    duration_weeks: float = Field(gt=0, le=520)
    seats: int = Field(ge=0, le=10_000)
    seats_taken: int = Field(default=0, ge=0, le=10_000)
    needs_te_decision: bool = False
    pay_subsidy: bool = False
    support_level: SupportLevel = "low"
    rules: ItemRules = Field(default_factory=ItemRules)
    completion: Completion = Field(default_factory=Completion)

    @field_validator("centre")
    @classmethod
    def _centre(cls, centre: str) -> str:
        if centre not in CENTRES:
            raise ValueError(f"unknown centre {centre!r}: one of {', '.join(CENTRES)}")
        return centre

    @field_validator("municipality")
    @classmethod
    def _mun(cls, code: str) -> str:
        return _check_municipality(code)

    @field_validator("min_language")
    @classmethod
    def _langs(cls, levels: dict[str, str]) -> dict[str, str]:
        for code in levels:
            _check_language(code)
        return levels

    @model_validator(mode="after")
    def _check(self) -> Opportunity:
        if self.kind == "training" and self.route is None:
            raise ValueError("route: a training needs a route")
        if self.kind != "training" and self.route is not None:
            raise ValueError(f"route: only trainings have a route, not a {self.kind}")
        if self.seats_taken > self.seats:
            raise ValueError("seats_taken must not exceed seats")
        return self

    @property
    def seats_left(self) -> int:
        """Seats or slots still free."""
        return self.seats - self.seats_taken
