"""Which consenting candidates fit a vacancy or a trial slot: the coordinators' use case and its candidate pools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from features.eligibility import REASONS, ClientTable, EligibilityEvaluator
from features.pairs import EncodedClients
from features.records import ClientProfile, Opportunity
from models.explain import readiness
from models.exploration import SlatePolicy
from service.auth import Principal, ensure_centre
from service.deps import actor_of
from service.impressions import ImpressionLog, impression_row
from service.metrics import ServiceMetrics
from service.model_holder import Snapshot
from service.profile_cache import ProfileCache
from service.schemas import (
    Candidate,
    CandidatesRequest,
    CandidatesResponse,
)
from service.storage import repositories as repo
from service.suggest import model_info


def candidates_for(
    opportunity_id: str,
    req: CandidatesRequest,
    principal: Principal,
    session: Session,
    snapshot: Snapshot,
    profiles: ProfileCache,
    metrics: ServiceMetrics,
    today: date,
    impressions: ImpressionLog,
) -> CandidatesResponse:
    """The use case behind ``POST /v1/opportunities/{id}/candidates``: the item, the pool, the ranking, the audit.

    Only clients of the item's centre who consented to matching and to sharing with coordinators are ranked;
    every disclosed client is audited (``candidates``) and each shown client is queued as an impression.

    Raises:
        HTTPException: 404 unknown opportunity, 403 another centre.
    """
    opp = repo.get_opportunity(session, opportunity_id)
    if opp is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="opportunity not found")
    ensure_centre(principal, opp.centre)
    clients = profiles.resolve(session, repo.shareable_client_versions(session, opp.centre))
    impression_id = impressions.new_id()
    response, propensities = _rank_candidates(opp, clients, req, snapshot, today, impressions.policy, impression_id)
    model = {"name": response.model.name, "version": response.model.version}
    impressions.record(
        [
            impression_row(
                impression_id,
                surface="candidates",
                client_id=c.client_id,
                opportunity_id=opp.opportunity_id,
                kind=opp.kind,
                position=c.rank,
                score=c.score,
                model=model,
                policy=response.policy,
                propensity=float(p),
                explored=response.explored,
                reference_date=req.reference_date or today,
            )
            for c, p in zip(response.data, propensities, strict=True)
        ]
    )
    repo.write_audit(session, actor_of(principal), [c.client_id for c in response.data], "candidates")
    session.commit()
    metrics.candidates.inc()
    if response.model.fallback:
        metrics.fallback_answers.inc()
    return response


def rank_candidates(
    opp: Opportunity,
    clients: Sequence[ClientProfile],
    req: CandidatesRequest,
    snapshot: Snapshot,
    today: date,
    policy: SlatePolicy | None = None,
    impression_id: str | None = None,
) -> CandidatesResponse:
    """Rank consenting clients for one opportunity (eligible ones only), with readiness and support needs.

    The pool is encoded once per model (:func:`candidate_pool`); eligibility, the cheap first stage and the
    features are computed for the whole pool at once, and the best :data:`SECOND_STAGE_K` by the first stage
    are scored by the ranker in one call.

    Args:
        opp: the opportunity (from the store).
        clients: consenting clients of the opportunity's centre (already filtered by consent in SQL).
        req: the validated request.
        snapshot: model to score with.
        today: default reference date.
        policy: serving policy (default deterministic); see ``models.exploration``.
        impression_id: id of this answer (default: a new one); seeds a sampling policy.
    """
    return _rank_candidates(opp, clients, req, snapshot, today, policy, impression_id or ImpressionLog.new_id())[0]


def _rank_candidates(
    opp: Opportunity,
    clients: Sequence[ClientProfile],
    req: CandidatesRequest,
    snapshot: Snapshot,
    today: date,
    policy: SlatePolicy | None,
    impression_id: str,
) -> tuple[CandidatesResponse, npt.NDArray[np.float64]]:
    ref = req.reference_date or today
    model = snapshot.loaded.model
    pos = snapshot.catalogue.position.get(opp.opportunity_id)
    if pos is not None and snapshot.catalogue.opportunities[pos] == opp:
        # The snapshot's encoded catalogue avoids touching the featurizer's (non thread-safe) encoding cache.
        evaluator, items, item = snapshot.catalogue.evaluator, snapshot.items, pos
    else:
        evaluator, items, item = EligibilityEvaluator([opp]), model.encode_items([opp]), 0
    pool = candidate_pool(snapshot, opp.centre, clients)
    codes = evaluator.evaluate_clients(pool.table, item, ref)
    counts = np.bincount(codes.astype(np.intp), minlength=len(REASONS))
    excluded = {REASONS[i]: int(c) for i, c in enumerate(counts) if i > 0 and c > 0}
    seed = ImpressionLog.seed(impression_id)
    ranking = model.rank_clients(
        pool.batch, items, item, np.flatnonzero(codes == 0), req.k, ref, policy=policy, seed=seed
    )
    ranked = [(float(sc), pool.clients[int(r)]) for r, sc in zip(ranking.rows, ranking.scores, strict=True)]
    data = [_candidate(c, opp, rank, sc) for rank, (sc, c) in enumerate(ranked, start=1)]
    response = CandidatesResponse(
        impression_id=impression_id,
        policy=ranking.policy,
        explored=ranking.explored,
        opportunity_id=opp.opportunity_id,
        model=model_info(snapshot),
        considered=len(clients),
        excluded_by_reason=excluded,
        count=len(data),
        data=data,
    )
    props = ranking.propensities if ranking.propensities is not None else np.ones(len(data))
    return response, props


@dataclass(frozen=True, eq=False)
class CandidatePool:
    """A centre's shareable clients encoded for one model: eligibility table and the encoded batch."""

    clients: Sequence[ClientProfile]
    members: tuple[int, ...]
    table: ClientTable
    batch: EncodedClients


def candidate_pool(snapshot: Snapshot, centre: str, clients: Sequence[ClientProfile]) -> CandidatePool:
    """The encoded pool of a centre's ``clients``, kept on the loaded model (it outlives catalogue refreshes).

    The profile cache hands back the very same objects while the stored profiles are unchanged, so identity
    of every member is a sound validity check; a changed profile is a new object and rebuilds the pool.
    """
    members = tuple(map(id, clients))
    model = snapshot.loaded.model

    def build() -> CandidatePool:
        return CandidatePool(clients, members, ClientTable.build(clients), model.encode_clients(clients))

    return snapshot.loaded.cached(("candidate_pool", centre), build, valid=lambda p: p.members == members)


def warm_candidate_pools(snapshot: Snapshot, pools: Mapping[str, Sequence[ClientProfile]]) -> int:
    """Encode each centre's pool ahead of the first candidates request (at start-up). Returns the clients encoded."""
    return sum(len(candidate_pool(snapshot, centre, clients).clients) for centre, clients in pools.items() if clients)


def _candidate(client: ClientProfile, opp: Opportunity, rank: int, score: float) -> Candidate:
    ready = readiness(client, opp)
    return Candidate(
        client_id=client.client_id,
        rank=rank,
        score=round(score, 6),
        readiness=ready.level,  # type: ignore[arg-type]
        language_support=ready.language_support,
        coaching_need=client.support_need,
        gaps=ready.gaps,
    )
