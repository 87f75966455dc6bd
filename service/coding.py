"""Use cases of occupation coding: suggest codes for a text, propose codes for a draft opportunity.

The coder (``features.coding``) is built once per process during the app's start-up, before the service reports
ready (``CoderHolder.build``): building it beside live traffic would hold the GIL for seconds and stall other
requests. If the build fails the service still starts, and coding routes answer 503.
Texts are never stored or logged: only the answer leaves this module.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from features.coding import CODER_VERSION, Coder, default_coder
from features.records import Opportunity
from features.taxonomy import Taxonomy
from service.errors import FieldError, ServiceUnavailable
from service.schemas import OpportunityProposal, OpportunityPut
from service.schemas_coding import (
    CodingRequest,
    CodingResponse,
    CodingText,
    OccupationCandidate,
    OccupationSkills,
    SkillInText,
    SkillRef,
)

logger = logging.getLogger(__name__)
BUILD_WAIT_S = 60.0
MAX_TOP_SKILLS = 100


class CoderHolder:
    """Builds the process-wide coder once and hands it to requests."""

    def __init__(self) -> None:
        self._future: Future[Coder] = Future()
        self._started = False
        self._lock = threading.Lock()

    def _claim(self) -> bool:
        with self._lock:
            if self._started:
                return False
            self._started = True
            return True

    def build(self) -> None:
        """Build the coder now, in this thread (idempotent; the app's start-up calls it)."""
        if self._claim():
            self._build()

    def start(self) -> None:
        """Build the coder in a daemon thread (idempotent; for callers that must not wait)."""
        if self._claim():
            threading.Thread(target=self._build, name="polku-coder-build", daemon=True).start()

    def _build(self) -> None:
        try:
            coder = default_coder()
        except Exception as exc:  # noqa: BLE001 - reported to every waiting request
            logger.error("occupation coder could not be built: %s", type(exc).__name__)
            self._future.set_exception(exc)
            return
        logger.info("occupation coder ready in %.1fs", coder.build_seconds)
        self._future.set_result(coder)

    def get(self, timeout_s: float = BUILD_WAIT_S) -> Coder:
        """The coder, waiting for its build if needed.

        Raises:
            ServiceUnavailable: the build failed or did not finish within ``timeout_s``.
        """
        self.start()
        try:
            return self._future.result(timeout=timeout_s)
        except TimeoutError as exc:
            raise ServiceUnavailable("occupation coder is still being built", retry_after_s=5) from exc
        except Exception as exc:
            raise ServiceUnavailable("occupation coder unavailable", retry_after_s=30) from exc


def suggest_codes(coder: Coder, req: CodingText, k: int = 5) -> CodingResponse:
    """Ranked ESCO occupations with ISCO-08 codes, the top occupation's skills and the skills named in the text."""
    result = coder.suggest(req.text, lang=req.lang, k=k)
    tax = coder.taxonomy
    label_lang = "en" if result.language == "sv" else result.language
    occupations = [
        OccupationCandidate(
            rank=rank,
            esco_uri=m.uri,
            label_fi=tax.occupation_label(m.uri, "fi"),
            label_en=tax.occupation_label(m.uri, "en"),
            isco=m.isco,
            isco_label=tax.isco_label(m.isco, label_lang),
            score=m.score,
            matched_label=m.matched_label,
        )
        for rank, m in enumerate(result.occupations, start=1)
    ]
    top = None
    if result.occupations:
        top = _occupation_skills(tax, result.occupations[0].uri, label_lang)
    skills = [
        SkillInText(
            uri=s.uri, label=tax.skill_label(s.uri, label_lang), matched_label=s.matched_label, words=[*s.words]
        )
        for s in result.skills_in_text
    ]
    return CodingResponse(
        language=result.language,
        language_detected=result.language_detected,
        coverage=result.coverage,
        notes=result.notes,
        occupations=occupations,
        top_occupation_skills=top,
        skills_in_text=skills,
        coder_version=CODER_VERSION,
        taxonomy_version=tax.version,
    )


def suggest_for_request(coder: Coder, req: CodingRequest) -> CodingResponse:
    """:func:`suggest_codes` for a ``POST /v1/coding:suggest`` body."""
    return suggest_codes(coder, req, k=req.k)


def _occupation_skills(tax: Taxonomy, uri: str, lang: str) -> OccupationSkills:
    essential, optional = tax.occupation_skills(uri)
    return OccupationSkills(
        esco_uri=uri,
        essential=[SkillRef(uri=s, label=tax.skill_label(s, lang)) for s in essential[:MAX_TOP_SKILLS]],
        optional=[SkillRef(uri=s, label=tax.skill_label(s, lang)) for s in optional[:MAX_TOP_SKILLS]],
    )


def is_draft(body: OpportunityPut) -> bool:
    """True when the PUT asks for proposed codes (``coding`` or ``confirm: false``) instead of storing."""
    return body.coding is not None or body.confirm is False


def propose_opportunity(coder: Coder, body: OpportunityPut) -> OpportunityProposal:
    """The draft with the top occupation and its skills filled in; nothing is stored.

    Raises:
        FieldError: ``coding`` without ``confirm: false``, ``confirm: false`` without ``coding``, or ``coding``
            together with explicit codes.
    """
    if body.coding is None:
        raise FieldError("body.coding", "confirm: false asks for proposed codes: give coding.text")
    if body.confirm is not False:
        raise FieldError(
            "body.confirm", "must be false with coding: proposed codes are never stored; PUT the confirmed codes"
        )
    if body.occupation is not None or body.required_skills.essential or body.required_skills.optional:
        raise FieldError("body.coding", "give either coding or explicit codes (occupation, required_skills)")
    coding = suggest_codes(coder, body.coding)
    record = body.record().model_dump(mode="json")
    if coding.occupations and coding.top_occupation_skills is not None:
        top = coding.top_occupation_skills
        record["occupation"] = {"esco_uri": top.esco_uri}
        record["required_skills"] = {
            "essential": [s.uri for s in top.essential][:200],
            "optional": [s.uri for s in top.optional][:400],
        }
    return OpportunityProposal(opportunity=Opportunity.model_validate(record, strict=False), coding=coding)
