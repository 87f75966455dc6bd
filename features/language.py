"""Finnish scale of developing language proficiency (OPH: alle_A1.1, A1.1 … C2.2), YKI mapping and level steps."""

from __future__ import annotations

from typing import Final, Literal, get_args

from features.errors import LanguageLevelError

CefrLevel = Literal[
    "alle_A1.1",
    "A1.1",
    "A1.2",
    "A1.3",
    "A2.1",
    "A2.2",
    "B1.1",
    "B1.2",
    "B2.1",
    "B2.2",
    "C1.1",
    "C1.2",
    "C2.1",
    "C2.2",
]
"""A level on the OPH code list `arviointiasteikkokehittyvankielitaidontasot` (alle_A1.1 = no Finnish at all)."""

CEFR_LEVELS: Final[tuple[str, ...]] = get_args(CefrLevel)
_ORDINAL: Final[dict[str, int]] = {code: i for i, code in enumerate(CEFR_LEVELS)}

# YKI grades are reported on the CEFR bands (1 = A1 … 6 = C2, OPH). We map each grade to the *lowest*
# sub-level of its band: a YKI certificate proves the band, not where inside it the person is, and an
# over-estimate of language is a documented cause of failed placements (domain.md §7.2).
YKI_TO_LEVEL: Final[dict[int, str]] = {1: "A1.1", 2: "A2.1", 3: "B1.1", 4: "B2.1", 5: "C1.1", 6: "C2.1"}

LanguageSkillName = Literal["speaking", "listening", "reading", "writing"]
LANGUAGE_SKILL_NAMES: Final[tuple[str, ...]] = get_args(LanguageSkillName)


def level_ordinal(level: str) -> int:
    """Position of a level on the scale.

    Args:
        level: a code such as ``"A2.1"`` or ``"alle_A1.1"``.

    Returns:
        0 for ``alle_A1.1`` up to 13 for ``C2.2``.

    Raises:
        LanguageLevelError: the code is not on the scale.
    """
    try:
        return _ORDINAL[level]
    except KeyError:
        raise LanguageLevelError(f"impossible language level {level!r}: use one of {', '.join(CEFR_LEVELS)}") from None


def level_from_ordinal(ordinal: int) -> str:
    """Inverse of :func:`level_ordinal`, clipped to the ends of the scale."""
    return CEFR_LEVELS[max(0, min(len(CEFR_LEVELS) - 1, ordinal))]


def level_from_yki(grade: int) -> str:
    """Map a YKI grade (1–6) onto the scale (lowest sub-level of the grade's CEFR band).

    Raises:
        LanguageLevelError: the grade is not 1–6.
    """
    if grade not in YKI_TO_LEVEL:
        raise LanguageLevelError(f"impossible YKI grade {grade!r}: YKI grades are 1–6")
    return YKI_TO_LEVEL[grade]


def steps_between(have: str, need: str) -> int:
    """Number of sub-level steps by which ``have`` falls short of ``need`` (0 when it meets it)."""
    return max(0, level_ordinal(need) - level_ordinal(have))
