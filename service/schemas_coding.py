"""API models of text coding (``POST /v1/coding``): a text in, proposed ESCO and ISCO-08 codes out."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from features.coding import MAX_TEXT_CHARS, check_text
from service.schema_base import ApiModel as _Api
from service.schema_base import Lang

_CODING_TEXT = Field(
    min_length=1,
    max_length=MAX_TEXT_CHARS,
    description=(
        "Plain text in Finnish, English or Swedish: a title, optionally with a description, or a short note of a "
        "client's work history. Never stored or logged. Markup, code and control characters are refused."
    ),
)


class CodingText(_Api):
    """A text to code and, optionally, its language (guessed when omitted)."""

    text: str = _CODING_TEXT
    lang: Lang | None = None

    @field_validator("text")
    @classmethod
    def _plain(cls, text: str) -> str:
        return check_text(text)


class CodingRequest(CodingText):
    """Ask for ESCO occupations, ISCO-08 codes and skills for a text."""

    k: int = Field(default=5, ge=1, le=20, description="Occupations to return.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "lähihoitaja, kotihoitoon", "k": 5},
                {"text": "Worked as a cook in a restaurant for five years", "lang": "en"},
            ]
        },
    )


class OccupationCandidate(_Api):
    """One proposed ESCO occupation with its ISCO-08 unit group."""

    rank: int
    esco_uri: str
    label_fi: str
    label_en: str
    isco: str
    isco_label: str
    score: float = Field(description="Similarity in [0, 1]; about 0.5 and above is a close label match.")
    matched_label: str = Field(description="The ESCO label (fi or en, preferred or alternative) that matched best.")


class SkillRef(_Api):
    """An ESCO skill with its label in the answer's language."""

    uri: str
    label: str


class OccupationSkills(_Api):
    """The essential and optional skills of the top occupation (ESCO relations)."""

    esco_uri: str
    essential: list[SkillRef]
    optional: list[SkillRef]


class SkillInText(_Api):
    """A skill the text names, with the text's words that matched it."""

    uri: str
    label: str
    matched_label: str
    words: list[str]


class CodingResponse(_Api):
    """Proposed codes for a text: nothing is stored; a person confirms the codes before they are used."""

    language: Lang
    language_detected: bool
    coverage: Literal["full", "limited"] = Field(description="``limited`` for Swedish (no Swedish ESCO labels).")
    notes: list[str] = Field(default_factory=list)
    occupations: list[OccupationCandidate]
    top_occupation_skills: OccupationSkills | None = None
    skills_in_text: list[SkillInText]
    coder_version: str
    taxonomy_version: str
