"""Search indexes over ESCO's labels, built from the shipped taxonomy with scikit-learn's vectorisers.

- :class:`OccupationIndex`: every Finnish and English preferred label and every English alternative label of the
  3,007 occupations, as TF-IDF vectors over stems and over character 3–5-grams of the stems (the n-grams find
  the parts of Finnish compounds: ``kotihoitoyksikkö`` shares ``hoito`` with ``kotihoito``), plus one *profile*
  per occupation (its labels and the labels of its essential skills, in both languages) that bridges words the
  labels lack (``varhaiskasvatuksen opettaja`` → the skill ``opettaa varhaiskasvatuksen opetussisältöjä``).
- :class:`SkillIndex`: the Finnish and English labels of the 13,896 skills as binary stem sets, to find skills a
  text names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from features.coding.text import MIN_PART_CHARS, STOPWORDS, Lang, Normaliser
from features.taxonomy import Taxonomy

FloatArray = npt.NDArray[np.float32]
ALT_LABEL_WEIGHT = 0.9
"""An alternative label counts a little less than a preferred one, so that ``plumber`` ranks the occupation
*plumber* above *pipe welder* (whose alternative labels include ``plumber``)."""
CHAR_NGRAMS = (3, 5)
WORD_WEIGHT = 1.0
PART_WEIGHT = 1.0
CHAR_WEIGHT = 1.0
PROFILE_MAX_DF = 0.2
_WORDS = re.compile(r"[^\W\d_]+")


def _identity(doc: Sequence[str]) -> Sequence[str]:
    return doc


def _dense(row: sp.spmatrix) -> FloatArray:
    return np.asarray(row.todense(), dtype=np.float32).ravel()


class QueryVectoriser:
    """``TfidfVectorizer.transform`` for one short query, without scikit-learn's per-call validation.

    The vectoriser is fitted by scikit-learn; this reuses its vocabulary, idf weights and analyser and applies the
    same steps (counts, ``1 + log`` tf, idf, L2 norm). scikit-learn's checks cost about 1 ms per call, more than
    the product itself (``tests/features/test_coding.py`` checks both give the same vector).
    """

    def __init__(self, fitted: TfidfVectorizer) -> None:
        """Take the vocabulary, idf and analyser of a fitted vectoriser."""
        self.vocabulary: dict[str, int] = fitted.vocabulary_
        self.idf = np.asarray(fitted.idf_, dtype=np.float64)
        self.analyse = fitted.build_analyzer()
        self.size = len(self.vocabulary)

    def transform(self, doc: object) -> sp.csr_matrix:
        """The L2-normalised TF-IDF row of one document (a 1 × vocabulary sparse matrix)."""
        counts: dict[int, int] = {}
        for feature in self.analyse(doc):
            j = self.vocabulary.get(feature)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        cols = np.fromiter(counts, dtype=np.int32, count=len(counts))
        values = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self.idf[cols]
        norm = float(np.sqrt(values @ values)) if len(values) else 0.0
        data = (values / norm if norm else values).astype(np.float32)
        return sp.csr_matrix((data, cols, np.array([0, len(cols)])), shape=(1, self.size))


def english_words(taxonomy: Taxonomy) -> frozenset[str]:
    """Lower-case words of ESCO's English preferred labels (occupations and skills)."""
    texts = [taxonomy.occupation_label(u, "en") for u in taxonomy.occupation_uris]
    texts += [taxonomy.skill_label(u, "en") for u in taxonomy.skill_uris]
    return frozenset(w for t in texts for w in _WORDS.findall(t.lower()) if w not in STOPWORDS)


def compound_vocabulary(taxonomy: Taxonomy, normaliser: Normaliser) -> dict[str, int]:
    """Stem → number of Finnish ESCO labels (occupations and skills) that use it as a word of its own."""
    counts: dict[str, int] = {}
    texts = [taxonomy.occupation_label(u, "fi") for u in taxonomy.occupation_uris]
    texts += [taxonomy.skill_label(u, "fi") for u in taxonomy.skill_uris]
    for text in texts:
        for word in set(_WORDS.findall(text.lower())):
            if len(word) >= MIN_PART_CHARS and word not in STOPWORDS:
                stem = normaliser.stem(word)
                counts[stem] = counts.get(stem, 0) + 1
    return counts


@dataclass(frozen=True)
class LabelHit:
    """The best label of an occupation for a query: its text and its similarity."""

    label: str
    score: float


class OccupationIndex:
    """Occupation labels and profiles as sparse TF-IDF matrices; ``label_scores`` and ``profile_scores`` per query."""

    def __init__(self, taxonomy: Taxonomy, normaliser: Normaliser) -> None:
        """Build the index from the taxonomy (2–4 s on one core)."""
        self.normaliser = normaliser
        self.uris: list[str] = list(taxonomy.occupation_uris)
        texts: list[str] = []
        langs: list[Lang] = []
        owners: list[int] = []
        weights: list[float] = []
        for i, uri in enumerate(self.uris):
            seen: set[str] = set()
            preferred = [taxonomy.occupation_label(uri, "fi"), taxonomy.occupation_label(uri, "en")]
            for rank, label in enumerate([*preferred, *taxonomy.occupation_alt_labels(uri)]):
                key = label.strip().lower()
                if key and key not in seen:
                    seen.add(key)
                    texts.append(label.strip())
                    langs.append("fi" if rank == 0 else "en")
                    owners.append(i)
                    weights.append(1.0 if rank < len(preferred) else ALT_LABEL_WEIGHT)
        self.labels = texts
        # Labels are grouped by occupation (owners ascending), so a per-occupation maximum is one reduceat.
        owner_arr = np.asarray(owners, dtype=np.int64)
        self._starts = np.flatnonzero(np.r_[True, owner_arr[1:] != owner_arr[:-1]])
        self._owner_of_start = owner_arr[self._starts]
        self._owners = owner_arr
        self._weights = np.asarray(weights, dtype=np.float32)
        analysed = [normaliser.analyse(t, lang) for t, lang in zip(texts, langs, strict=True)]
        stems = [a[0] for a in analysed]
        self.word_ = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, dtype=np.float32)
        self._word_t = sp.csr_matrix(self.word_.fit_transform(stems).T)
        self.part_ = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, dtype=np.float32)
        self._part_t = sp.csr_matrix(self.part_.fit_transform([a[1] for a in analysed]).T)
        self.char_ = TfidfVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, sublinear_tf=True, dtype=np.float32)
        self._char_t = sp.csr_matrix(self.char_.fit_transform([" ".join(s) for s in stems]).T)
        skill_stems: dict[str, list[str]] = {}  # a skill is essential to many occupations: stem its labels once
        profiles: list[list[str]] = []
        for i, uri in enumerate(self.uris):
            essential, _optional = taxonomy.occupation_skills(uri)
            first = self._starts[i]
            profile = [
                *stems[first],
                *analysed[first][1],
                *normaliser.stems(taxonomy.occupation_label(uri, "en"), "en"),
            ]
            for skill in essential:
                if skill not in skill_stems:
                    fi_stems, fi_parts = normaliser.analyse(taxonomy.skill_label(skill, "fi"), "fi")
                    en_stems = normaliser.stems(taxonomy.skill_label(skill, "en"), "en")
                    skill_stems[skill] = fi_stems + [p for p in fi_parts if p not in fi_stems] + en_stems
                profile += skill_stems[skill]
            profiles.append(profile)
        self.profile_ = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, max_df=PROFILE_MAX_DF, dtype=np.float32)
        self._profile_t = sp.csr_matrix(self.profile_.fit_transform(profiles).T)
        self._word_q = QueryVectoriser(self.word_)
        self._part_q = QueryVectoriser(self.part_)
        self._char_q = QueryVectoriser(self.char_)
        self._profile_q = QueryVectoriser(self.profile_)

    def label_scores(self, stems: Sequence[str], parts: Sequence[str], *, chars: bool) -> FloatArray:
        """Per label: weighted cosine similarities of stems, compound parts and (with ``chars``) character n-grams.

        The mean is multiplied by the label's weight (alternative labels count a little less).
        """
        score = WORD_WEIGHT * _dense(self._word_q.transform(stems) @ self._word_t)
        score += PART_WEIGHT * _dense(self._part_q.transform(parts) @ self._part_t)
        if chars:
            score += CHAR_WEIGHT * _dense(self._char_q.transform(" ".join(stems)) @ self._char_t)
            score /= WORD_WEIGHT + PART_WEIGHT + CHAR_WEIGHT
        else:
            score /= WORD_WEIGHT + PART_WEIGHT
        return score * self._weights

    def best_per_occupation(self, label_scores: FloatArray) -> FloatArray:
        """The best label score of each occupation (index aligned with :attr:`uris`)."""
        out = np.zeros(len(self.uris), dtype=np.float32)
        out[self._owner_of_start] = np.maximum.reduceat(label_scores, self._starts)
        return out

    def best_label(self, occupation: int, label_scores: FloatArray) -> LabelHit:
        """The label of ``occupation`` that scored best."""
        rows = np.flatnonzero(self._owners == occupation)
        best = rows[int(np.argmax(label_scores[rows]))]
        return LabelHit(self.labels[best], float(label_scores[best]))

    def profile_scores(self, stems: Sequence[str]) -> FloatArray:
        """Per occupation: cosine similarity of the stems with its profile."""
        return _dense(self._profile_q.transform(stems) @ self._profile_t)

    def nbytes(self) -> int:
        """Bytes held by the matrices and arrays (vocabularies not counted)."""
        mats = (self._word_t, self._part_t, self._char_t, self._profile_t)
        arrays = sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in mats)
        return int(arrays + self._weights.nbytes + self._owners.nbytes + self._starts.nbytes)


@dataclass(frozen=True)
class SkillLabel:
    """One label of a skill as a set of stems."""

    skill: int
    text: str
    stems: tuple[str, ...]


class SkillIndex:
    """Skill labels (fi and en, preferred and alternative) as a binary label × stem matrix."""

    MIN_SINGLE_STEM_CHARS = 5
    """A one-word label must have a stem this long to count (``hoito``, ``care`` alone say too little)."""

    def __init__(self, taxonomy: Taxonomy, normaliser: Normaliser) -> None:
        """Build the index from the taxonomy."""
        self.uris: list[str] = list(taxonomy.skill_uris)
        labels: list[SkillLabel] = []
        for i, uri in enumerate(self.uris):
            seen: set[tuple[str, ...]] = set()
            texts: list[tuple[str, Lang]] = [(taxonomy.skill_label(uri, "fi"), "fi")]
            texts += [(taxonomy.skill_label(uri, "en"), "en"), *((alt, "en") for alt in taxonomy.skill_alt_labels(uri))]
            for text, lang in texts:
                stems = tuple(dict.fromkeys(normaliser.stems(text, lang)))
                if not stems or stems in seen:
                    continue
                if len(stems) == 1 and len(stems[0]) < self.MIN_SINGLE_STEM_CHARS:
                    continue
                seen.add(stems)
                labels.append(SkillLabel(i, text, stems))
        self.labels = labels
        self.vocab_ = CountVectorizer(analyzer=_identity, binary=True, dtype=np.float32)
        self._matrix = sp.csr_matrix(self.vocab_.fit_transform([lab.stems for lab in labels]))
        self._lengths = np.asarray([len(lab.stems) for lab in labels], dtype=np.float32)
        self._by_stem = sp.csr_matrix(self._matrix.T)  # stem → labels: a query touches only its stems' rows

    def covered(self, stems: Sequence[str]) -> npt.NDArray[np.int64]:
        """Indexes of the labels whose every stem occurs in ``stems``."""
        vocabulary = self.vocab_.vocabulary_
        cols = sorted({vocabulary[s] for s in stems if s in vocabulary})
        if not cols:
            return np.zeros(0, dtype=np.int64)
        counts = np.asarray(self._by_stem[cols].sum(axis=0), dtype=np.float32).ravel()
        return np.flatnonzero(counts >= self._lengths)

    def nbytes(self) -> int:
        """Bytes held by the matrix and arrays (vocabulary and label objects not counted)."""
        mats = (self._matrix, self._by_stem)
        return int(sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in mats) + self._lengths.nbytes)
