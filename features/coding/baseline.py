"""The plain baseline the coder is measured against: exact and fuzzy label matching without lemmatisation.

A text (and its head segment) is compared with every ESCO occupation label (fi and en preferred, en alternative)
as lower-case surface words: an exact match of the whole label scores 1, otherwise the Jaccard overlap of the word
sets (times 0.9), with :func:`difflib.SequenceMatcher` as a tie-break. No stems, no character n-grams, no
profiles: this is what a search box over the label list does.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Final

from features.coding.coder import OccupationMatch
from features.coding.text import STOPWORDS, check_text, head_segment
from features.taxonomy import Taxonomy

_WORD: Final = re.compile(r"[^\W\d_]+")


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS)


class PlainLabelMatcher:
    """Exact or fuzzy (word-overlap) matching of ESCO occupation labels; no normalisation beyond lower case."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        """Index every label by its words."""
        self.taxonomy = taxonomy
        self._labels: list[tuple[str, int, frozenset[str]]] = []
        self._by_word: dict[str, list[int]] = {}
        for i, uri in enumerate(taxonomy.occupation_uris):
            texts = [taxonomy.occupation_label(uri, "fi"), taxonomy.occupation_label(uri, "en")]
            for text in dict.fromkeys([*texts, *taxonomy.occupation_alt_labels(uri)]):
                words = _words(text)
                if not words:
                    continue
                for w in words:
                    self._by_word.setdefault(w, []).append(len(self._labels))
                self._labels.append((text.lower(), i, words))

    def suggest(self, text: str, k: int = 5) -> list[OccupationMatch]:
        """The ``k`` best occupations for ``text`` (raises ``TextRejected`` like the coder)."""
        clean = check_text(text).lower()
        best: dict[int, tuple[float, float, str]] = {}
        for query in dict.fromkeys([head_segment(clean).strip(), clean]):
            words = _words(query)
            candidates = {j for w in words for j in self._by_word.get(w, ())}
            for j in candidates:
                label, occ, label_words = self._labels[j]
                score = 1.0 if label == query else 0.9 * len(words & label_words) / len(words | label_words)
                tie = SequenceMatcher(None, query, label).ratio()
                if (score, tie) > best.get(occ, (0.0, 0.0, ""))[:2]:
                    best[occ] = (score, tie, label)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:k]
        uris = self.taxonomy.occupation_uris
        return [
            OccupationMatch(uris[i], self.taxonomy.isco_of_occupation(uris[i]), round(s, 4), label)
            for i, (s, _tie, label) in ranked
        ]
