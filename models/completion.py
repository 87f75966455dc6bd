"""What completing a training gives a client: the state transition that multi-step paths chain.

Completion adds the skills the item gives (at a working level), raises language, literacy, digital and
education levels to what the item reaches, and records a qualification as prior work in its occupation.
"""

from __future__ import annotations

from typing import Any, cast

from features.language import CefrLevel, level_ordinal
from features.records import (
    LITERACY_LEVELS,
    ClientProfile,
    Education,
    LanguageSkill,
    Opportunity,
    PriorOccupation,
    SkillClaim,
)

GAINED_SKILL_LEVEL = 2
"""Level of a skill gained by completing a training (1-4 scale)."""


def _merge_language(state: ClientProfile, lang: str, level: str) -> list[LanguageSkill] | None:
    if state.language_ordinal(lang) >= level_ordinal(level):
        return None
    others = [rec for rec in state.languages if rec.language != lang]
    return [
        *others,
        LanguageSkill.model_construct(language=lang, level=cast(CefrLevel, level), per_skill={}, source="teacher"),
    ]


def apply_completion(state: ClientProfile, item: Opportunity) -> tuple[ClientProfile, dict[str, Any]]:
    """The client after completing ``item``, and what changed (empty when nothing did).

    Skills gained are added at level 2 (certified); language, literacy and digital levels only go up; an
    education level reached is a Finnish one, so it needs no recognition; a work trial or training leading to
    an occupation counts as work experience in it.
    """
    c = item.completion
    update: dict[str, Any] = {}
    gains: dict[str, Any] = {}
    owned = {s.uri for s in state.skills}
    new_skills = [u for u in dict.fromkeys(c.skills_gained) if u not in owned]
    if new_skills:
        added = [SkillClaim.model_construct(uri=u, level=GAINED_SKILL_LEVEL, evidence="certified") for u in new_skills]
        update["skills"] = [*state.skills, *added]
        gains["skills"] = new_skills
    languages = list(state.languages)
    for lang, level in c.language_reached.items():
        merged = _merge_language(state.model_copy(update={"languages": languages}), lang, level)
        if merged is not None:
            languages = merged
            gains.setdefault("language", {})[lang] = level
    if "language" in gains:
        update["languages"] = languages
    if c.literacy_reached and LITERACY_LEVELS.index(c.literacy_reached) > LITERACY_LEVELS.index(state.literacy):
        update["literacy"] = gains["literacy"] = c.literacy_reached
    if c.digital_reached is not None and c.digital_reached > state.digital_skills:
        update["digital_skills"] = gains["digital"] = c.digital_reached
    if c.isced_reached is not None and c.isced_reached > state.highest_isced:
        edu = Education.model_construct(isced_level=c.isced_reached, field=None, recognition="not_needed")
        update["education"] = [*state.education, edu]
        gains["isced"] = c.isced_reached
    if c.qualification:
        gains["qualification"] = c.qualification
    if item.kind == "work_trial" and item.occupation is not None:
        prior = PriorOccupation.model_construct(occupation=item.occupation, years=item.duration_weeks / 52.0)
        update["prior_occupations"] = [*state.prior_occupations, prior]
        gains["experience"] = item.occupation.isco
    return (state.model_copy(update=update) if update else state), gains


def completion_gains(state: ClientProfile, item: Opportunity) -> dict[str, Any]:
    """The gains of :func:`apply_completion` (what completing ``item`` gives ``state``) without building the state."""
    c = item.completion
    gains: dict[str, Any] = {}
    owned = {s.uri for s in state.skills}
    new_skills = [u for u in dict.fromkeys(c.skills_gained) if u not in owned]
    if new_skills:
        gains["skills"] = new_skills
    for lang, level in c.language_reached.items():
        if state.language_ordinal(lang) < level_ordinal(level):
            gains.setdefault("language", {})[lang] = level
    if c.literacy_reached and LITERACY_LEVELS.index(c.literacy_reached) > LITERACY_LEVELS.index(state.literacy):
        gains["literacy"] = c.literacy_reached
    if c.digital_reached is not None and c.digital_reached > state.digital_skills:
        gains["digital"] = c.digital_reached
    if c.isced_reached is not None and c.isced_reached > state.highest_isced:
        gains["isced"] = c.isced_reached
    if c.qualification:
        gains["qualification"] = c.qualification
    if item.kind == "work_trial" and item.occupation is not None:
        gains["experience"] = item.occupation.isco
    return gains
