"""Plain-text checks, tokens and Finnish-aware normalisation (Snowball stems) for the occupation coder.

The normaliser turns every word into a Snowball stem: the Finnish stemmer after the English one, so that
``lähihoitajaksi``, ``lähihoitajan`` and ``lähihoitajille`` all become ``lähihoitaj`` and ``nurses`` becomes
``nurs``. The same chain is applied to ESCO's labels and to the caller's text, so a stem never has to be a
real word, only the same on both sides. ``docs/coding.md`` explains why Snowball was chosen over simplemma and
Voikko (measured there).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

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


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a text: its surface form, its stem and its position (word index)."""

    surface: str
    stem: str
    position: int


def detect_language(text: str) -> Lang:
    """Guess fi, sv or en from function words and letters (titles without such words count as Finnish)."""
    words = [w.lower() for w in _WORD.findall(text)]
    sv = sum(w in SWEDISH_MARKERS for w in words) + 2 * ("å" in text.lower())
    en = sum(w in _EN_WORDS for w in words)
    fi = sum(w in _FI_WORDS for w in words) + sum(ch in _FI_LETTERS for ch in text.lower())
    if sv > max(en, fi, 0):
        return "sv"
    if en > fi:
        return "en"
    if fi == 0 and words and all(w.isascii() for w in words) and _looks_english(words):
        return "en"
    return "fi"


def _looks_english(words: list[str]) -> bool:
    """Titles such as ``Plumber`` or ``Bus driver``: English-only endings and no Finnish vowel harmony markers."""
    endings = ("er", "or", "ist", "ant", "ent", "ian", "man", "ess", "ive", "ic", "ee", "ing")
    hits = sum(w.endswith(endings) for w in words)
    finnish = sum(w.endswith(("ja", "jä", "ija", "aja", "äjä", "isti", "nen", "tti", "kko")) for w in words)
    return hits > finnish


class Normaliser:
    """Words → Snowball stems (English, then Finnish), Swedish words through a small glossary; cached per word."""

    def __init__(self) -> None:
        """Create the stemmers (``snowballstemmer`` uses PyStemmer's C code when it is installed)."""
        import snowballstemmer

        self._fi = snowballstemmer.stemmer("finnish")
        self._en = snowballstemmer.stemmer("english")
        self._stem = lru_cache(maxsize=200_000)(self._stem_uncached)

    def _stem_uncached(self, word: str) -> str:
        return str(self._fi.stemWord(self._en.stemWord(word)))

    def stem(self, word: str) -> str:
        """The stem of one lower-case word."""
        return self._stem(word)

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
                        out.append(Token(surface, self._stem(part), position))
                        position += 1
                    continue
            if word in STOPWORDS or len(word) < 2:
                position += 1
                continue
            out.append(Token(surface, self._stem(word), position))
            position += 1
        return out

    def stems(self, text: str, lang: Lang = "fi") -> list[str]:
        """Only the stems of :meth:`tokens`."""
        return [t.stem for t in self.tokens(text, lang)]


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
