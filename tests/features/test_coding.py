"""The occupation coder on its own: inflected Finnish, English, Swedish, hostile text, and a property test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.coding import MAX_TEXT_CHARS, Coder, TextRejected, check_text, default_coder, detect_language
from features.taxonomy import default_taxonomy

HEALTHCARE_ASSISTANT = "http://data.europa.eu/esco/occupation/d38c2107-98f2-47b7-8bb4-f69750d51082"
NURSE = "http://data.europa.eu/esco/occupation/8d3e8aaa-791b-4c75-a465-f3f827028f50"
COOK = "http://data.europa.eu/esco/occupation/90f75f67-495d-49fa-ab57-2f320e251d7e"
CHILD_DAY_CARE = "http://data.europa.eu/esco/occupation/3f74aad8-2d60-4be2-b059-8dba5568d530"
CHILD_CARE = "http://data.europa.eu/esco/occupation/3413f234-6230-47a8-8cc7-2691fd54ce3a"


@pytest.fixture(scope="module")
def coder() -> Coder:
    return default_coder()


def _top(coder: Coder, text: str, **kw: object) -> list[str]:
    return [m.uri for m in coder.suggest(text, **kw).occupations]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "lähihoitaja",
        "lähihoitajaksi",
        "lähihoitajan",
        "lähihoitajille",
        "lähihoitaja, kotihoitoon",
        "Haluaa kouluttautua lähihoitajaksi.",
        "Lähihoitajan sijaisuus palvelutalossa",
    ],
)
def test_inflected_finnish_forms_find_the_same_occupation(coder: Coder, text: str) -> None:
    assert _top(coder, text)[0] == HEALTHCARE_ASSISTANT


def test_inflected_forms_score_like_the_basic_form(coder: Coder) -> None:
    base = coder.suggest("lähihoitaja").occupations[0].score
    for form in ("lähihoitajaksi", "lähihoitajan", "lähihoitajille", "lähihoitajana"):
        assert coder.suggest(form).occupations[0].score == pytest.approx(base, abs=0.02)


def test_a_work_history_note_names_the_occupation_and_its_isco_code(coder: Coder) -> None:
    result = coder.suggest("Asiakas on työskennellyt kotimaassaan sairaanhoitajana kymmenen vuotta.")
    assert result.language == "fi"
    assert result.occupations[0].uri == NURSE
    assert result.occupations[0].isco == "2221"


@pytest.mark.parametrize(
    ("text", "uri"),
    [("Registered nurse for a hospital ward", NURSE), ("I worked as a cook in a restaurant", COOK)],
)
def test_english_input(coder: Coder, text: str, uri: str) -> None:
    result = coder.suggest(text)
    assert result.language == "en"
    assert result.coverage == "full"
    assert uri in [m.uri for m in result.occupations[:5]]


def test_swedish_input_is_answered_with_limited_coverage(coder: Coder) -> None:
    result = coder.suggest("barnskötare inom småbarnspedagogik")
    assert result.language == "sv"
    assert result.coverage == "limited"
    assert any("Swedish" in n for n in result.notes)
    assert {CHILD_DAY_CARE, CHILD_CARE} & {m.uri for m in result.occupations[:5]}


def test_language_given_by_the_caller_wins(coder: Coder) -> None:
    result = coder.suggest("kokki", lang="sv")
    assert result.language == "sv"
    assert not result.language_detected


def test_skills_named_in_the_text_come_with_their_words(coder: Coder) -> None:
    result = coder.suggest("Kokki. Osaa leipoa ja puhuu englantia sekä arabiaa.")
    named = {s.matched_label.lower(): s.words for s in result.skills_in_text}
    assert "englanti" in named
    assert named["englanti"] == ("englantia",)


def test_top_scores_lie_between_zero_and_one_and_are_ranked(coder: Coder) -> None:
    scores = [m.score for m in coder.suggest("sairaanhoitaja, kotihoito", k=10).occupations]
    assert len(scores) == 10
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s <= 1.0 for s in scores)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "kokki\x00",
        "kokki\x1b[31m",
        "<script>alert(1)</script> kokki",
        "<b>kokki</b>",
        "kokki &amp; tarjoilija",
        "'; DROP TABLE opportunities; --",
        "SELECT * FROM clients WHERE 1=1",
        "kokki' OR '1'='1",
        "${jndi:ldap://x} kokki",
        "1234 5678 !!!",
        "x" * (MAX_TEXT_CHARS + 1),
    ],
)
def test_hostile_or_empty_text_is_rejected_with_a_reason_that_does_not_repeat_it(coder: Coder, text: str) -> None:
    with pytest.raises(TextRejected) as err:
        coder.suggest(text)
    assert str(err.value)
    if text.strip():
        assert text.strip()[:12] not in str(err.value)


def test_plain_text_with_punctuation_is_accepted() -> None:
    assert check_text("  Kokki (keittiö), 37,5 h/vk – vakituinen; aloitus 1.9.  ") == (
        "Kokki (keittiö), 37,5 h/vk – vakituinen; aloitus 1.9."
    )


def test_language_detection_uses_the_label_words_of_each_language(coder: Coder) -> None:
    vocabulary = coder.vocabulary
    assert detect_language("lähihoitaja, kotihoitoon", vocabulary) == "fi"
    assert detect_language("Taksinkuljettaja", vocabulary) == "fi"
    assert detect_language("Bus driver, city routes", vocabulary) == "en"
    assert detect_language("Registered nurse, elderly care", vocabulary) == "en"
    assert detect_language("lärare inom småbarnspedagogik", vocabulary) == "sv"
    assert detect_language("Hän on tehnyt töitä kokkina") == "fi"
    assert detect_language("He worked as a cook and a cleaner") == "en"


def test_k_out_of_range_is_refused(coder: Coder) -> None:
    with pytest.raises(ValueError, match="k must be"):
        coder.suggest("kokki", k=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400), lang=st.sampled_from([None, "fi", "en", "sv"]))
def test_the_coder_never_fails_on_any_text(coder: Coder, text: str, lang: str | None) -> None:
    """Any text: either a clear rejection, or an answer whose every field holds its contract."""
    tax = default_taxonomy()
    try:
        result = coder.suggest(text, lang=lang, k=5)  # type: ignore[arg-type]
    except TextRejected:
        return
    assert result.language in ("fi", "en", "sv")
    assert result.coverage == ("limited" if result.language == "sv" else "full")
    assert len(result.occupations) <= 5
    assert [m.score for m in result.occupations] == sorted((m.score for m in result.occupations), reverse=True)
    for m in result.occupations:
        assert tax.has_occupation(m.uri)
        assert m.isco == tax.isco_of_occupation(m.uri)
        assert 0.0 < m.score <= 1.0
        assert m.matched_label
    for s in result.skills_in_text:
        assert tax.has_skill(s.uri)
        assert s.words


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_the_normaliser_never_fails_and_keeps_word_order(coder: Coder, text: str) -> None:
    tokens = coder.normaliser.tokens(text)
    assert [t.position for t in tokens] == sorted(t.position for t in tokens)
    assert all(t.stem for t in tokens)


def test_query_vectoriser_equals_scikit_learns_transform(coder: Coder) -> None:
    import numpy as np

    idx = coder.occupations
    cases = [
        (idx.word_, idx._word_q, ["lähihoitaj", "kotihoito", "lähihoitaj", "tuntematon"]),
        (idx.part_, idx._part_q, ["kas", "työntekij"]),
        (idx.char_, idx._char_q, "lähihoitaj kotihoito"),
        (idx.profile_, idx._profile_q, ["opettaj", "varhaiskasvatuks"]),
        (idx.word_, idx._word_q, []),
    ]
    for fitted, fast, doc in cases:
        expected = fitted.transform([doc]).toarray().ravel()
        assert np.allclose(fast.transform(doc).toarray().ravel(), expected, atol=1e-6)
