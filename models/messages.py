"""Texts in Finnish, Swedish and English for reasons, gaps and exclusion reasons (plain language, no jargon)."""

from __future__ import annotations

from typing import Final

from features.eligibility import REASONS

LANGS: Final[tuple[str, ...]] = ("fi", "sv", "en")

# Feature family of every feature-name prefix; families map to one reason text. Client-only columns (age,
# client_*) describe the person, not the fit, and never become reasons.
FAMILY_OF_PREFIX: Final[tuple[tuple[str, str], ...]] = (
    ("ess_missing", ""),
    ("ess_n", ""),
    ("opt_n", ""),
    ("ess_cov", "skills"),
    ("opt_cov", "optional_skills"),
    ("goal_skill_gain", "goal_skills"),
    ("occ_prior_", "prior_occupation"),
    ("occ_goal_", "goal_occupation"),
    ("has_occupation", ""),
    ("lang_gain", "language_gain"),
    ("lang_fi_uncertain", ""),
    ("lang_", "language"),
    ("client_fi_level", ""),
    ("s2_support", "s2_support"),
    ("lit_gain", "literacy_gain"),
    ("lit_gap", "literacy"),
    ("digital_gap", "digital"),
    ("isced_gain", "education_gain"),
    ("edu_", "education"),
    ("recog_", "recognition"),
    ("client_recognition", ""),
    ("dist_", "distance"),
    ("days_to_start", "start"),
    ("no_intake", ""),
    ("continuous", "start"),
    ("duration_weeks", "duration"),
    ("seats_left", "seats"),
    ("fill_ratio", "seats"),
    ("support_need", ""),
    ("item_support", "support"),
    ("support_", "support"),
    ("kind_", "path_preference"),
    ("route_", "path_preference"),
    ("pref_", "path_preference"),
    ("path_match", "path_preference"),
    ("pay_subsidy", "pay_subsidy"),
    ("te_decision", ""),
    ("hist_accept_rate", "popular"),
    ("item_history_n", ""),
    ("item_accept_effect", "item_record"),
    ("item_outcome_effect", "item_record"),
    ("age", ""),
    ("client_", ""),
)


def feature_family(feature: str) -> str:
    """The reason family of a feature name ('' when the feature never becomes a reason)."""
    for prefix, family in FAMILY_OF_PREFIX:
        if feature.startswith(prefix):
            return family
    return ""


REASON_TEXTS: Final[dict[str, dict[str, str]]] = {
    "skills": {
        "fi": "Osaamisesi kattaa {coverage} % tehtävän keskeisistä taidoista",
        "sv": "Dina kunskaper täcker {coverage} % av de viktigaste färdigheterna",
        "en": "Your skills cover {coverage}% of the essential skills",
    },
    "optional_skills": {
        "fi": "Sinulla on myös toivottuja lisätaitoja",
        "sv": "Du har också önskade tilläggsfärdigheter",
        "en": "You also have skills that are valued here",
    },
    "goal_skills": {
        "fi": "Antaa taitoja, joita tavoiteammattisi vaatii",
        "sv": "Ger färdigheter som ditt målyrke kräver",
        "en": "Gives skills your goal occupation needs",
    },
    "prior_occupation": {
        "fi": "Vastaa aiempaa työkokemustasi ({occupation})",
        "sv": "Motsvarar din tidigare arbetserfarenhet ({occupation})",
        "en": "Matches your earlier work ({occupation})",
    },
    "goal_occupation": {
        "fi": "Johtaa tavoiteammattiisi ({occupation})",
        "sv": "Leder till ditt målyrke ({occupation})",
        "en": "Leads to your goal occupation ({occupation})",
    },
    "language": {
        "fi": "Kielitaitosi riittää tähän",
        "sv": "Dina språkkunskaper räcker för detta",
        "en": "Your language level is enough for this",
    },
    "language_gain": {
        "fi": "Nostaa suomen kielen tasoasi (tavoite {level})",
        "sv": "Höjer din nivå i finska (mål {level})",
        "en": "Raises your Finnish level (to {level})",
    },
    "s2_support": {
        "fi": "Mukana suomi toisena kielenä -tuki (S2)",
        "sv": "Stöd i finska som andraspråk (S2) ingår",
        "en": "Includes Finnish as a second language (S2) support",
    },
    "literacy": {
        "fi": "Luku- ja kirjoitustaitosi riittää tähän",
        "sv": "Din läs- och skrivförmåga räcker för detta",
        "en": "Your reading and writing skills are enough for this",
    },
    "literacy_gain": {
        "fi": "Vahvistaa luku- ja kirjoitustaitoa",
        "sv": "Stärker läs- och skrivförmågan",
        "en": "Strengthens reading and writing",
    },
    "digital": {
        "fi": "Digitaidot riittävät tähän",
        "sv": "Dina digitala färdigheter räcker för detta",
        "en": "Your digital skills are enough for this",
    },
    "education": {
        "fi": "Koulutuksesi täyttää vaatimukset",
        "sv": "Din utbildning uppfyller kraven",
        "en": "Your education meets the requirements",
    },
    "education_gain": {
        "fi": "Antaa tutkinnon tai koulutustason, jota sinulla ei vielä ole",
        "sv": "Ger en examen eller utbildningsnivå som du ännu inte har",
        "en": "Gives a qualification or education level you do not have yet",
    },
    "recognition": {
        "fi": "Tutkintosi tunnustaminen ei ole esteenä",
        "sv": "Erkännandet av din examen är inget hinder",
        "en": "Recognition of your qualification is not an obstacle",
    },
    "distance": {
        "fi": "Lähellä kotiasi ({km} km)",
        "sv": "Nära ditt hem ({km} km)",
        "en": "Close to home ({km} km)",
    },
    "start": {
        "fi": "Voit aloittaa pian ({start})",
        "sv": "Du kan börja snart ({start})",
        "en": "You can start soon ({start})",
    },
    "duration": {
        "fi": "Kesto sopii tilanteeseesi ({weeks} viikkoa)",
        "sv": "Längden passar din situation ({weeks} veckor)",
        "en": "The length suits your situation ({weeks} weeks)",
    },
    "seats": {
        "fi": "Paikkoja on vapaana",
        "sv": "Det finns lediga platser",
        "en": "Places are available",
    },
    "support": {
        "fi": "Tarjoaa tarvitsemaasi tukea",
        "sv": "Erbjuder det stöd du behöver",
        "en": "Offers the support you need",
    },
    "path_preference": {
        "fi": "Sopii toivomaasi polkuun",
        "sv": "Passar den väg du önskar",
        "en": "Fits the path you prefer",
    },
    "pay_subsidy": {
        "fi": "Palkkatuki on mahdollinen",
        "sv": "Lönesubvention är möjlig",
        "en": "Pay subsidy is possible",
    },
    "popular": {
        "fi": "Asiakkaat ovat usein ottaneet tämän vastaan",
        "sv": "Kunder har ofta tackat ja till detta",
        "en": "Clients have often accepted this",
    },
    "item_record": {
        "fi": "Tämä vaihtoehto on toiminut aiemmille asiakkaille odotettua paremmin",
        "sv": "Det här alternativet har fungerat bättre än väntat för tidigare kunder",
        "en": "This option has worked better than expected for earlier clients",
    },
    # Outcome reasons (models.explain.outcome_reasons): what the outcome models expect, not a feature family.
    "often_completed": {
        "fi": "Usein suoritettu loppuun: arviolta {pct} % aloittaa ja suorittaa sen",
        "sv": "Slutförs ofta: uppskattningsvis {pct} % börjar och slutför det",
        "en": "Often completed: about {pct}% start and complete it",
    },
    "leads_to_work": {
        "fi": "Johtaa työhön useammin kuin vastaavat vaihtoehdot",
        "sv": "Leder oftare till arbete än liknande alternativ",
        "en": "Leads to work more often than similar options",
    },
    "often_chosen": {
        "fi": "Samankaltaiset asiakkaat ottavat tämän usein vastaan",
        "sv": "Liknande kunder tackar ofta ja till detta",
        "en": "Similar clients often take this up",
    },
    "new_item": {
        "fi": "Uusi vaihtoehto: arvio perustuu samanlaisten vaihtoehtojen keskiarvoon",
        "sv": "Nytt alternativ: bedömningen bygger på genomsnittet för liknande alternativ",
        "en": "New option: the estimate rests on the average of similar options",
    },
    # Congestion prices (models.allocation) moved the item in the list: up past a crowded one, or down.
    "congestion_alternative": {
        "fi": "Parhaiten sopiviin on paljon hakijoita; tämä vaihtoehto on lähes yhtä hyvä",
        "sv": "Det finns många sökande till de bäst passande; det här alternativet är nästan lika bra",
        "en": "The best-fitting options have many applicants; this one is almost as good",
    },
    "congested": {
        "fi": "Tähän on paljon hakijoita ja vähän paikkoja",
        "sv": "Hit finns många sökande och få platser",
        "en": "Many applicants for few places",
    },
}

GAP_TEXTS: Final[dict[str, dict[str, str]]] = {
    "skill": {
        "fi": "Puuttuva keskeinen taito: {label}",
        "sv": "Saknad viktig färdighet: {label}",
        "en": "Missing essential skill: {label}",
    },
    "language": {
        "fi": "Kielitaito: vaaditaan {language} {need}, nyt {have}",
        "sv": "Språk: {language} {need} krävs, nu {have}",
        "en": "Language: {language} {need} required, now {have}",
    },
    "literacy": {
        "fi": "Luku- ja kirjoitustaito: vaaditaan {need}, nyt {have}",
        "sv": "Läs- och skrivförmåga: {need} krävs, nu {have}",
        "en": "Reading and writing: {need} required, now {have}",
    },
    "digital": {
        "fi": "Digitaidot: vaaditaan taso {need}, nyt {have}",
        "sv": "Digitala färdigheter: nivå {need} krävs, nu {have}",
        "en": "Digital skills: level {need} required, now {have}",
    },
    "education": {
        "fi": "Koulutus: vaaditaan ISCED-taso {need}, nyt {have}",
        "sv": "Utbildning: ISCED-nivå {need} krävs, nu {have}",
        "en": "Education: ISCED level {need} required, now {have}",
    },
    "recognition": {
        "fi": "Ulkomailla suoritetun tutkinnon tunnustaminen puuttuu",
        "sv": "Erkännande av utländsk examen saknas",
        "en": "Recognition of a foreign qualification is missing",
    },
}

LANGUAGE_NAMES: Final[dict[str, dict[str, str]]] = {
    "fi": {"fi": "suomi", "sv": "finska", "en": "Finnish"},
    "sv": {"fi": "ruotsi", "sv": "svenska", "en": "Swedish"},
    "en": {"fi": "englanti", "sv": "engelska", "en": "English"},
}

LITERACY_NAMES: Final[dict[str, dict[str, str]]] = {
    "none": {"fi": "ei lukutaitoa", "sv": "ingen läsförmåga", "en": "none"},
    "basic": {"fi": "perustaso", "sv": "grundnivå", "en": "basic"},
    "functional": {"fi": "toimiva", "sv": "funktionell", "en": "functional"},
}

EXCLUSION_TEXTS: Final[dict[str, dict[str, str]]] = {
    "other_centre": {
        "fi": "Kuuluu toisen osaamiskeskuksen palveluihin",
        "sv": "Hör till ett annat kompetenscenters tjänster",
        "en": "Belongs to another competence centre",
    },
    "centre_min_age": {
        "fi": "Osaamiskeskuksen ikäraja ei täyty",
        "sv": "Kompetenscentrets åldersgräns uppfylls inte",
        "en": "Below the centre's minimum age",
    },
    "item_age": {
        "fi": "Ikä ei ole palvelun ikärajojen sisällä",
        "sv": "Åldern ligger utanför tjänstens åldersgränser",
        "en": "Age is outside the service's age limits",
    },
    "client_type": {
        "fi": "Palvelu ei ole tarjolla tälle asiakasryhmälle (TE / kunta)",
        "sv": "Tjänsten erbjuds inte denna kundgrupp (TE / kommun)",
        "en": "Not offered to this client type (TE / municipal)",
    },
    "work_permit": {
        "fi": "Vaatii oikeuden tehdä työtä",
        "sv": "Kräver rätt att arbeta",
        "en": "Requires the right to work",
    },
    "integration_period": {
        "fi": "Vain kotoutumisaikana oleville",
        "sv": "Endast för personer inom integrationstiden",
        "en": "Only for people within the integration period",
    },
    "centre_language_gate": {
        "fi": "Osaamiskeskuksen ryhmäpalvelujen suomen kielen vaatimus ei täyty",
        "sv": "Kompetenscentrets krav på finska för grupptjänster uppfylls inte",
        "en": "Below the centre's Finnish requirement for group services",
    },
    "language_gate": {
        "fi": "Kielitaitovaatimus on vielä liian kaukana",
        "sv": "Språkkravet är ännu för långt borta",
        "en": "The language requirement is still too far above the current level",
    },
    "literacy_gate": {
        "fi": "Luku- ja kirjoitustaitovaatimus ei täyty",
        "sv": "Kravet på läs- och skrivförmåga uppfylls inte",
        "en": "The reading and writing requirement is not met",
    },
    "education_prerequisite": {
        "fi": "Pohjakoulutusvaatimus ei täyty",
        "sv": "Kravet på tidigare utbildning uppfylls inte",
        "en": "The prior education requirement is not met",
    },
    "recognition_missing": {
        "fi": "Vaatii ulkomaisen tutkinnon tunnustamisen",
        "sv": "Kräver erkännande av utländsk examen",
        "en": "Requires recognition of a foreign qualification",
    },
    "no_seats": {
        "fi": "Ei vapaita paikkoja",
        "sv": "Inga lediga platser",
        "en": "No places left",
    },
    "no_intake": {
        "fi": "Ei enää aloituspäiviä",
        "sv": "Inga fler startdatum",
        "en": "No start dates left",
    },
    "too_far": {
        "fi": "Liian kaukana asiakkaan enimmäismatkaan nähden",
        "sv": "För långt bort med tanke på kundens maximala resväg",
        "en": "Farther than the client can travel",
    },
}

assert set(EXCLUSION_TEXTS) == set(REASONS[1:]), "every exclusion reason needs a text"


def _pick(table: dict[str, dict[str, str]], key: str, lang: str) -> str:
    texts = table[key]
    return texts.get(lang) or texts["en"]


def reason_text(family: str, lang: str = "en", **values: object) -> str:
    """Text of a reason family in ``lang`` (fi / sv / en), with ``values`` filled in."""
    return _pick(REASON_TEXTS, family, lang).format(**values)


def gap_text(kind: str, lang: str = "en", **values: object) -> str:
    """Text of a gap kind in ``lang``, with ``values`` filled in."""
    return _pick(GAP_TEXTS, kind, lang).format(**values)


def exclusion_text(reason: str, lang: str = "en") -> str:
    """Text of an exclusion reason code of :data:`features.eligibility.REASONS`.

    Raises:
        KeyError: unknown reason code.
    """
    return _pick(EXCLUSION_TEXTS, reason, lang)


def language_name(code: str, lang: str = "en") -> str:
    """Name of a working language (fi, sv, en) in ``lang``; other codes are returned as they are."""
    names = LANGUAGE_NAMES.get(code)
    return (names.get(lang) or names["en"]) if names else code
