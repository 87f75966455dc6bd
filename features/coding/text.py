"""Plain-text checks, tokens and Finnish-aware normalisation (Snowball stems) for the occupation coder.

The normaliser turns every word into a Snowball stem of its language: ``lähihoitajaksi``, ``lähihoitajan`` and
``lähihoitajille`` all become ``lähihoitaj`` (Finnish), ``nurses`` becomes ``nurs`` (English). ESCO's Finnish
labels go through the Finnish stemmer and its English labels through the English one; the caller's text through
the stemmer of its (given or guessed) language. A stem never has to be a real word, only the same on both sides.
``docs/coding.md`` explains why Snowball was chosen over simplemma and Voikko (measured there).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Final, Literal, NamedTuple

from features.coding.swedish import SWEDISH_GLOSSARY, SWEDISH_MARKERS
from features.errors import PolkuError

Lang = Literal["fi", "sv", "en"]
MAX_TEXT_CHARS: Final = 5000
"""Longest text the coder accepts (a job ad's title and description fits in 2,000 characters)."""

_WORD: Final = re.compile(r"[^\W\d_]+")
# C0/C1 control characters other than tab, line feed and carriage return.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_MARKUP: Final = re.compile(r"<\s*/?\s*[a-zA-Z!?][^>]*>|&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")
_CODE: Final = re.compile(
    r"""(?ix)
    \b(?:select|insert|update|delete|drop|truncate|alter|create|union|exec)\b[^.\n]{0,60}
        \b(?:from|into|table|set|where|select|database)\b
    | ['"]\s*(?:or|and)\s+['"\w]+\s*=
    | ;\s*--
    | \bjavascript\s*:
    | \{\{|\$\{
    """
)
_FI_LETTERS: Final = frozenset("äö")
_EN_WORDS: Final = frozenset(
    "the and of for with in at as an a to is was are has have worked work experience job we our you your who".split()
)
_FI_WORDS: Final = frozenset("ja tai sekä on oli ovat työ työssä kokemusta vuotta hän haluaa myös".split())
STOPWORDS: Final = frozenset(
    # Finnish, English and Swedish function words that carry no occupation.
    "ja tai sekä eli kuin on oli ovat ole ei se ne he hän joka jotka myös mutta että kun jos niin sen sitä "
    "the and or of for in on at to a an as by with from is was are be been has have this that who which "
    "och eller i på av för till med som inom en ett den det de är var har".split()
)


class TextRejected(PolkuError, ValueError):
    """The text is not plain natural-language text the coder accepts (the reason never repeats the text)."""


def check_text(text: str) -> str:
    """Validate a text for coding and return it with normalised Unicode (NFC) and trimmed whitespace.

    Raises:
        TextRejected: empty or whitespace only, longer than :data:`MAX_TEXT_CHARS`, control characters,
            markup (HTML/XML tags or entities), code-like text (SQL statements, template or script syntax),
            or no words at all.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise TextRejected(f"must be at most {MAX_TEXT_CHARS} characters")
    if _CONTROL.search(text):
        raise TextRejected("must not contain control characters")
    clean = unicodedata.normalize("NFC", text).strip()
    if not clean:
        raise TextRejected("must not be empty or whitespace only")
    if _MARKUP.search(clean):
        raise TextRejected("must be plain text, not markup (HTML or XML tags or entities)")
    if _CODE.search(clean):
        raise TextRejected("must be plain text, not code (SQL, script or template syntax)")
    if not _WORD.search(clean):
        raise TextRejected("must contain words")
    return clean


class Token(NamedTuple):
    """One word of a text: surface form, stem, position (word index), and whether it is a compound's part."""

    surface: str
    stem: str
    position: int
    part: bool = False


class LanguageVocabulary(NamedTuple):
    """Words that mark a language: English label words, and stems of Finnish label words with their stemmer."""

    english_words: frozenset[str]
    finnish_stems: frozenset[str]
    finnish_stem: Callable[[str], str]


def detect_language(text: str, vocabulary: LanguageVocabulary | None = None) -> Lang:
    """Guess fi, sv or en: Swedish function words, then which language's ESCO label words the text uses.

    Without a vocabulary only function words and the letters ä and ö count. Ties go to Finnish.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    sv = sum(w in SWEDISH_MARKERS for w in words) + 2 * ("å" in text.lower())
    en = sum(w in _EN_WORDS for w in words)
    fi = sum(w in _FI_WORDS for w in words)
    if "å" not in text.lower():  # Swedish writes ä and ö too
        fi += sum(ch in _FI_LETTERS for ch in text.lower())
    if vocabulary is not None:
        for w in words:
            in_en = w in vocabulary.english_words
            in_fi = vocabulary.finnish_stem(w) in vocabulary.finnish_stems
            en += in_en and not in_fi
            fi += in_fi and not in_en
    if sv > max(en, fi, 0):
        return "sv"
    return "en" if en > fi else "fi"


MIN_COMPOUND_CHARS: Final = 7
_WORD_CACHE_SIZE: Final = 500_000
MIN_PART_CHARS: Final = 3


class Normaliser:
    """Words → Snowball stems of the text's language; Swedish words through a small glossary; cached per word.

    With a compound vocabulary (:meth:`use_compounds`), a long word also yields the stems of its parts when both
    parts are known words (``kassatyöntekijä`` → ``kassa`` + ``työntekijä``; Koehn and Knight's frequency-based
    splitting, with the ESCO labels' own words as the vocabulary), so compounds that share a part match.
    """

    def __init__(self) -> None:
        """Create the stemmers (``snowballstemmer`` uses PyStemmer's C code when it is installed)."""
        import snowballstemmer

        self._fi = snowballstemmer.stemmer("finnish")
        self._en = snowballstemmer.stemmer("english")
        self._known: dict[str, int] = {}
        self._words: dict[str, tuple[str, tuple[str, ...]]] = {}

    def stem(self, word: str, lang: Lang = "fi") -> str:
        """The stem of one lower-case word: Finnish Snowball for fi, English Snowball for en and sv."""
        return str((self._fi if lang == "fi" else self._en).stemWord(word))

    def use_compounds(self, known: dict[str, int]) -> None:
        """Split compounds into known stems from now on (``known``: stem → frequency in the label words)."""
        self._known = dict(known)
        self._words.clear()

    def word(self, word: str, lang: Lang = "fi") -> tuple[str, tuple[str, ...]]:
        """The stem of a lower-case word and the stems of its compound parts (Finnish only; ``()`` when none)."""
        key = word if lang == "fi" else f"{lang}:{word}"
        hit = self._words.get(key)
        if hit is None:
            hit = (self.stem(word), self._split(word)) if lang == "fi" else (self.stem(word, lang), ())
            if len(self._words) < _WORD_CACHE_SIZE:
                self._words[key] = hit
        return hit

    def _split(self, word: str, depth: int = 0) -> tuple[str, ...]:
        """Stems of the parts of ``word``, or ``()`` when it is not a known compound.

        The stemmer only changes a word's ending, so the last part's stem is a suffix of the compound's stem:
        only suffixes that are known stems are tried. The left part must be a known word itself or, once, a
        compound of known words (``erityis|koulunkäynti|avustaja``); a known left part is not split further.
        """
        if len(word) < MIN_COMPOUND_CHARS or not self._known or depth > 1:
            return ()
        stem = self.stem(word)
        best: tuple[float, tuple[str, ...], str] | None = None
        for i in range(MIN_PART_CHARS, len(stem) - MIN_PART_CHARS + 1):
            right = stem[i:].lstrip("-")
            fr = self._known.get(right, 0)
            if not fr:
                continue
            left = word[:i].rstrip("-")
            if len(left) < MIN_PART_CHARS:
                continue
            left_stem = self.stem(left)
            fl = self._known.get(left_stem, 0)
            left_parts: tuple[str, ...] = (left_stem,)
            if not fl:
                left_parts = self._split(left, depth + 1)
                fl = min((self._known.get(p, 0) for p in left_parts), default=0)
            if fl and (best is None or fl * fr > best[0]):
                best = (float(fl * fr), left_parts, right)
        return () if best is None else (*best[1], best[2])

    def tokens(self, text: str, lang: Lang = "fi") -> list[Token]:
        """Words of ``text`` with their stems, stop words left out; Swedish words are first put into English."""
        out: list[Token] = []
        position = 0
        for match in _WORD.finditer(text):
            surface = match.group()
            word = surface.lower()
            if lang == "sv":
                english = _swedish_to_english(word)
                if english is not None:
                    for part in english.split():
                        out.append(Token(surface, self.stem(part, "en"), position))
                        position += 1
                    continue
            if word in STOPWORDS or len(word) < 2:
                position += 1
                continue
            stem, parts = self.word(word, lang)
            out.append(Token(surface, stem, position))
            for part in parts:
                out.append(Token(surface, part, position, True))
            position += 1
        return out

    def analyse(self, text: str, lang: Lang = "fi") -> tuple[list[str], list[str]]:
        """Fast path for fi and en: the whole words' stems and the parts view (see :func:`parts_of`)."""
        stems: list[str] = []
        parts: list[str] = []
        for word in _WORD.findall(text.lower()):
            if word in STOPWORDS or len(word) < 2:
                continue
            stem, split = self.word(word, lang)
            stems.append(stem)
            parts.extend(split or (stem,))
        return stems, parts

    def stems(self, text: str, lang: Lang = "fi") -> list[str]:
        """The whole words' stems of :meth:`tokens` (no compound parts)."""
        if lang != "sv":
            return self.analyse(text, lang)[0]
        return [t.stem for t in self.tokens(text, lang) if not t.part]


def parts_of(tokens: list[Token]) -> list[str]:
    """Each word as its compound parts' stems, or as its own stem when it is not a compound."""
    out: list[str] = []
    for i, t in enumerate(tokens):
        if t.part:
            out.append(t.stem)
        elif i + 1 >= len(tokens) or not tokens[i + 1].part:
            out.append(t.stem)
    return out


def _swedish_to_english(word: str) -> str | None:
    """English words for a Swedish word of the glossary, trying a few inflection endings; None if unknown."""
    if word in SWEDISH_GLOSSARY:
        return SWEDISH_GLOSSARY[word]
    for ending in ("arna", "erna", "orna", "na", "en", "et", "ar", "er", "or", "n", "s"):
        if word.endswith(ending) and word[: -len(ending)] in SWEDISH_GLOSSARY:
            return SWEDISH_GLOSSARY[word[: -len(ending)]]
    return None


def head_segment(text: str) -> str:
    """The head of a title: the first line up to the first comma, semicolon or bracket (at most 120 characters).

    Job titles put the occupation first (``lähihoitaja, kotihoitoon``); the rest names the unit or the
    contract. For a long description the first line is usually its title.
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    return re.split(r"[,;(\[]|\s[-–—]\s", first, maxsplit=1)[0][:120]
