"""The occupation coder: from a job ad's or a note's words to ranked ESCO occupations and the skills it names.

``Coder.suggest(text)`` scores every ESCO occupation as a weighted mean of

- the best label match of the text's *head* (a title's first segment: ``lähihoitaja`` in
  ``lähihoitaja, kotihoitoon``), over stems and character n-grams;
- the best label match of the whole text, over stems (and n-grams when the text is short);
- the match of the text with the occupation's profile (labels and essential skills, fi and en).

The weights were chosen on the development part of the hand-coded Helsinki titles and the author-written
titles only (``docs/coding.md``). The coder stores nothing and logs nothing of the text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache
from typing import Final, Literal

import numpy as np

from features.coding.index import OccupationIndex, SkillIndex, compound_vocabulary, english_words
from features.coding.text import (
    Lang,
    LanguageVocabulary,
    Normaliser,
    Token,
    check_text,
    detect_language,
    head_segment,
    parts_of,
)
from features.taxonomy import Taxonomy, default_taxonomy

CODER_VERSION: Final = "snowball-tfidf-1"
"""Changes whenever the scoring changes (answers name it next to the taxonomy version)."""
HEAD_WEIGHT: Final = 1.0
FULL_WEIGHT: Final = 1.0
PROFILE_WEIGHT: Final = 1.0
SHORT_TEXT_CHARS: Final = 200
"""Up to this length the whole text is also matched by character n-grams (longer texts by stems only)."""
MAX_SKILL_MENTIONS: Final = 20
SLASH_ALTERNATIVES = True

Coverage = Literal["full", "limited"]


@dataclass(frozen=True)
class OccupationMatch:
    """One ranked occupation: ESCO URI, ISCO-08 group, score in [0, 1] and the label that matched best."""

    uri: str
    isco: str
    score: float
    matched_label: str


@dataclass(frozen=True)
class SkillMention:
    """A skill the text names: ESCO URI, the ESCO label matched and the text's own words that matched it."""

    uri: str
    matched_label: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class CodingResult:
    """What the coder proposes for one text (nothing of the text itself is kept)."""

    language: Lang
    language_detected: bool
    coverage: Coverage
    occupations: list[OccupationMatch]
    skills_in_text: list[SkillMention]
    notes: list[str] = field(default_factory=list)


class Coder:
    """Ranks ESCO occupations for a text and finds the skills it names (build once, use from many threads)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        """Build the normaliser and both indexes from the shipped taxonomy."""
        start = time.perf_counter()
        self.taxonomy = taxonomy
        self.normaliser = Normaliser()
        finnish = compound_vocabulary(taxonomy, self.normaliser)
        self.normaliser.use_compounds(finnish)
        self.vocabulary = LanguageVocabulary(english_words(taxonomy), frozenset(finnish), self.normaliser.stem)
        self.occupations = OccupationIndex(taxonomy, self.normaliser)
        self.skills = SkillIndex(taxonomy, self.normaliser)
        self.build_seconds = time.perf_counter() - start

    def suggest(self, text: str, *, lang: Lang | None = None, k: int = 5) -> CodingResult:
        """Ranked occupations (``k`` of them) and the skills the text names.

        Args:
            text: a title, optionally with a description, or a short note of a work history (fi, en or sv).
            lang: the text's language; guessed when ``None``.
            k: how many occupations to return (1–50).

        Raises:
            TextRejected: the text is empty, too long, or not plain text (see :func:`check_text`).
            ValueError: ``k`` out of range.
        """
        if not 1 <= k <= 50:
            raise ValueError("k must be between 1 and 50")
        clean = check_text(text)
        used: Lang = lang or detect_language(clean, self.vocabulary)
        tokens = self.normaliser.tokens(clean, used)
        stems = [t.stem for t in tokens]
        notes: list[str] = []
        if used == "sv":
            notes.append(
                "Swedish coverage is limited: ESCO's Swedish labels are not in Polku's data, so only the Swedish "
                "words of a small glossary are matched (through their English equivalents)."
            )
        if not stems:
            notes.append("no words of the text are known to the ESCO labels")
            return CodingResult(used, lang is None, _coverage(used), [], [], notes)
        occupations = self._rank(clean, used, tokens, k)
        if not occupations:
            notes.append("no words of the text are known to the ESCO labels")
        return CodingResult(used, lang is None, _coverage(used), occupations, self._skills(tokens), notes)

    def _rank(self, text: str, lang: Lang, tokens: list[Token], k: int) -> list[OccupationMatch]:
        idx = self.occupations
        stems = [t.stem for t in tokens if not t.part]
        head_text = head_segment(text)
        head_tokens = self.normaliser.tokens(head_text, lang) or tokens
        head = [t.stem for t in head_tokens if not t.part] or stems
        head_labels = idx.label_scores(head, parts_of(head_tokens), chars=True)
        if SLASH_ALTERNATIVES:
            for alternative in _alternatives(head_text):
                alt_tokens = self.normaliser.tokens(alternative, lang)
                alt_stems = [t.stem for t in alt_tokens if not t.part]
                if alt_stems:
                    np.maximum(
                        head_labels, idx.label_scores(alt_stems, parts_of(alt_tokens), chars=True), out=head_labels
                    )
        full_labels = idx.label_scores(stems, parts_of(tokens), chars=len(text) <= SHORT_TEXT_CHARS)
        head_parts = [p for p in parts_of(head_tokens) if p not in head]
        profile_head = idx.profile_scores(head + head_parts)
        full_parts = [p for p in parts_of(tokens) if p not in stems]
        profile_full = idx.profile_scores(stems + full_parts) if head != stems else profile_head
        total = (
            HEAD_WEIGHT * idx.best_per_occupation(head_labels)
            + FULL_WEIGHT * idx.best_per_occupation(full_labels)
            + PROFILE_WEIGHT * (profile_head + profile_full)
        ) / (HEAD_WEIGHT + FULL_WEIGHT + 2 * PROFILE_WEIGHT)
        top = np.argsort(-total, kind="stable")[:k]
        out: list[OccupationMatch] = []
        for i in top:
            score = float(total[i])
            if score <= 0.0:
                break
            uri = idx.uris[int(i)]
            hit = idx.best_label(int(i), head_labels + full_labels)
            out.append(OccupationMatch(uri, self.taxonomy.isco_of_occupation(uri), round(score, 4), hit.label))
        return out

    def _skills(self, tokens: list[Token]) -> list[SkillMention]:
        idx = self.skills
        positions: dict[str, list[Token]] = {}
        for t in tokens:
            positions.setdefault(t.stem, []).append(t)
        found: dict[int, SkillMention] = {}
        best_len: dict[int, int] = {}
        for li in idx.covered(list(positions)):
            label = idx.labels[int(li)]
            words = _window(label.stems, positions)
            if words is None or best_len.get(label.skill, 0) >= len(label.stems):
                continue
            best_len[label.skill] = len(label.stems)
            found[label.skill] = SkillMention(idx.uris[label.skill], label.text, words)
        ranked = sorted(found, key=lambda s: (-best_len[s], idx.uris[s]))
        return [found[s] for s in ranked[:MAX_SKILL_MENTIONS]]

    def memory_bytes(self) -> int:
        """Bytes held by the indexes' matrices and arrays."""
        return self.occupations.nbytes() + self.skills.nbytes()


def _alternatives(head: str) -> list[str]:
    """The titles of a head that names several with slashes (``lähihoitaja/hoitaja``, ``waiter / waitress``)."""
    parts = [p.strip() for p in head.split("/")]
    return parts if len(parts) > 1 and all(parts) else []


def _window(stems: tuple[str, ...], positions: dict[str, list[Token]]) -> tuple[str, ...] | None:
    """The text's words for a label's stems, if they occur close together (within 2 words per stem + 1)."""
    first = positions[stems[0]]
    span = 2 * len(stems) + 1
    for anchor in first:
        chosen = [anchor]
        for stem in stems[1:]:
            near = [t for t in positions[stem] if abs(t.position - anchor.position) <= span]
            if not near:
                break
            chosen.append(min(near, key=lambda t: abs(t.position - anchor.position)))
        else:
            return tuple(t.surface for t in sorted(chosen, key=lambda t: t.position))
    return None


def _coverage(lang: Lang) -> Coverage:
    return "limited" if lang == "sv" else "full"


@cache
def default_coder() -> Coder:
    """The process-wide coder over the shipped taxonomy (built once, in 3–5 s on one core)."""
    return Coder(default_taxonomy())
