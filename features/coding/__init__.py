"""Occupation coding: from a job ad's or a note's words to ESCO occupations, ISCO-08 codes and skills."""

from features.coding.coder import (
    CODER_VERSION,
    Coder,
    CodingResult,
    OccupationMatch,
    SkillMention,
    default_coder,
)
from features.coding.text import MAX_TEXT_CHARS, Lang, Normaliser, TextRejected, check_text, detect_language

__all__ = [
    "CODER_VERSION",
    "MAX_TEXT_CHARS",
    "Coder",
    "CodingResult",
    "Lang",
    "Normaliser",
    "OccupationMatch",
    "SkillMention",
    "TextRejected",
    "check_text",
    "default_coder",
    "detect_language",
]
