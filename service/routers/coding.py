"""POST /v1/coding:suggest: ESCO occupations, ISCO-08 codes and skills proposed for a text (nothing stored)."""

from __future__ import annotations

from fastapi import APIRouter

from service.coding import suggest_for_request
from service.deps import CoderDep, SessionDep, StaffForCoding, actor_of
from service.schemas import ERROR_RESPONSES
from service.schemas_coding import CodingRequest, CodingResponse
from service.storage import repositories as repo

router = APIRouter(prefix="/v1", tags=["coding"])


@router.post("/coding:suggest", operation_id="suggestCoding", response_model=CodingResponse, responses=ERROR_RESPONSES)
def post_coding_suggest(
    req: CodingRequest, principal: StaffForCoding, session: SessionDep, coder: CoderDep
) -> CodingResponse:
    """Ranked ESCO occupations with ISCO-08 codes, the top occupation's skills and the skills the text names.

    The text may be a counsellor's note about a client's work history, so it is treated as personal data: it is
    never stored or logged, and each use is audited (purpose ``coding_suggest``, no client id, no text). A person
    confirms the codes before they are used; Swedish texts are answered with limited coverage.
    """
    repo.write_audit(session, actor_of(principal), [None], "coding_suggest")
    session.commit()
    return suggest_for_request(coder, req)
