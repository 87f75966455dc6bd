"""The promotion gate on logged data alone: off-policy evaluation of a candidate from exported impressions.

``polku promote --version N --offline-policy-evaluation --logs export.jsonl`` reads an export of
``polku export-training-data`` (format 2: impressions with their exact propensities, feedback joined to them).
Every logged suggestions slate (one impression and kind) is replayed under the candidate, served with the same
policy as logged (``models.exploration``): the candidate scores the same eligible items on the same reference day
(``models.replay``) and gives its conditional propensity of each logged item at its logged position. The reward
of a shown item is its graded outcome from feedback naming the impression (1 accepted, 2 started, 3 completed,
4 employed after six months; 0 without feedback). :mod:`training.ope` turns these into IPS, SNIPS and doubly
robust estimates of the candidate's DCG of outcomes per slate, with bootstrap intervals.

The rule: promote when the lower end of the 95 % interval of SNIPS(candidate) - value of the logged policy (what
serves now, on the same slates, resampled in pairs) is at least ``min_gain_lower_bound``, and at least
``min_support`` of the slates support the candidate (a logged policy that never explored cannot judge a
different ranking). Group gaps cannot be measured offline (exports carry no audit attributes); the decision
says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from features.eligibility import EligibilityEvaluator
from features.events import DecisionEvent, ImpressionRecord, OutcomeEvent
from features.records import KINDS, Opportunity
from models.exploration import Deterministic, PlackettLuce, SlatePolicy
from models.package import PolkuModel
from models.replay import scored_pool, target_propensities
from training import ope
from training.feedback import FeedbackData

MIN_SUPPORT: Final = 0.05
_GRADE: Final = {"accepted": 1, "started": 2, "completed": 3, "employed_6m": 4, "employed_12m": 4}


def policy_named(name: str) -> SlatePolicy:
    """The serving policy a logged policy name stands for (``deterministic``, ``plackett-luce(t=T,top=N)``)."""
    if name == "deterministic":
        return Deterministic()
    if name.startswith("plackett-luce(") and name.endswith(")"):
        fields = dict(part.split("=", 1) for part in name[len("plackett-luce(") : -1].split(","))
        return PlackettLuce(float(fields["t"]), int(fields.get("top", 3)))
    raise ValueError(f"unknown logged policy {name!r}")


def _rewards(data: FeedbackData) -> dict[tuple[str, str, str], float]:
    """(impression, client, opportunity) -> best graded outcome of the events naming that impression."""
    out: dict[tuple[str, str, str], float] = defaultdict(float)
    events: list[DecisionEvent | OutcomeEvent] = [*data.decisions, *data.outcomes]
    for event in events:
        if event.impression_id is None:
            continue
        grade = _GRADE.get(event.decision if isinstance(event, DecisionEvent) else event.outcome, 0)
        key = (event.impression_id, event.client_id, event.opportunity_id)
        out[key] = max(out[key], float(grade))
    return out


@dataclass(frozen=True)
class OfflineEvaluation:
    """The candidate's estimated value on the logged slates, and the logged policy's own value."""

    estimates: Mapping[str, ope.Estimate]
    logged_value: float
    slates: int
    metric: str = "DCG of graded outcome labels per slate"
    gain: ope.Estimate | None = None  # SNIPS of candidate - logged policy, resampled in pairs


def offline_policy_evaluation(
    data: FeedbackData,
    opportunities: Sequence[Opportunity],
    candidate: PolkuModel,
    *,
    clip: float = ope.DEFAULT_CLIP,
    samples: int = ope.BOOTSTRAP_SAMPLES,
) -> OfflineEvaluation:
    """Estimate the candidate's value from the logged suggestions slates of an export (see the module docstring)."""
    clients = {c.client_id: c for c in data.clients}
    slates: dict[tuple[str, str], list[ImpressionRecord]] = defaultdict(list)
    for imp in data.impressions:
        if imp.surface == "suggestions" and imp.client_id in clients:
            slates[(imp.impression_id, imp.kind)].append(imp)
    rewards = _rewards(data)
    opportunities = sorted(opportunities, key=lambda o: o.opportunity_id)  # the store's order: ties break alike
    evaluator = EligibilityEvaluator(opportunities)
    items = candidate.encode_items(opportunities)
    position_of = {o.opportunity_id: n for n, o in enumerate(opportunities)}
    kinds = np.array([KINDS.index(o.kind) for o in opportunities])
    cols: dict[str, list[Any]] = defaultdict(list)
    used = 0
    for (_, kind), rows in sorted(slates.items()):
        rows.sort(key=lambda r: r.position)
        if any(r.opportunity_id not in position_of for r in rows):
            continue
        client = clients[rows[0].client_id]
        ref = rows[0].reference_date
        eligible = np.asarray(evaluator.evaluate(client, ref).eligible_indices, dtype=np.int64)
        pool, scores = scored_pool(
            candidate, candidate.encode_client(client), items, eligible[kinds[eligible] == KINDS.index(kind)], ref
        )
        shown = [position_of[r.opportunity_id] for r in rows]
        pi = target_propensities(pool, scores, shown, policy_named(rows[0].policy))
        for r, p in zip(rows, pi, strict=True):
            cols["query"].append(used)
            cols["position"].append(r.position)
            cols["mu"].append(r.propensity)
            cols["pi"].append(float(p))
            cols["reward"].append(rewards.get((r.impression_id, r.client_id, r.opportunity_id), 0.0))
        used += 1
    reward = np.array(cols["reward"], dtype=np.float64)
    position = np.array(cols["position"], dtype=np.int64)
    by_position = {int(j): float(reward[position == j].mean()) for j in np.unique(position)}
    rhat = np.array([by_position[int(j)] for j in position])
    logs = ope.LoggedSlates(
        query=np.array(cols["query"], dtype=np.int64),
        position=position,
        logging_propensity=np.array(cols["mu"], dtype=np.float64),
        target_propensity=np.array(cols["pi"], dtype=np.float64),
        reward=reward,
        reward_hat=rhat,
        target_reward_hat=rhat,
    )
    logged = float(np.sum(ope.dcg_weights(position) * reward) / used) if used else float("nan")
    gain = ope.estimate(logs, "snips", clip=clip, samples=samples, versus_logging=True) if used else None
    return OfflineEvaluation(ope.estimate_all(logs, clip=clip, samples=samples), logged, used, gain=gain)


def offline_decision(
    evaluation: OfflineEvaluation, *, min_gain_lower_bound: float, min_support: float = MIN_SUPPORT
) -> tuple[bool, dict[str, float], str]:
    """The gate rule on an offline evaluation: (promote?, gain ``{diff, lo, hi}`` vs the logged policy, reason)."""
    snips = evaluation.estimates["snips"]
    base = evaluation.logged_value
    paired = evaluation.gain or ope.Estimate(snips.value - base, snips.low - base, snips.high - base, 0.0, 0.0)
    gain = {"diff": paired.value, "lo": paired.low, "hi": paired.high}
    head = (
        f"SNIPS {snips.value:.4f} [{snips.low:.4f}, {snips.high:.4f}] vs logged policy {base:.4f} "
        f"on {evaluation.slates} slates, support {snips.support:.3f}"
    )
    tail = "; group gaps are not measurable from logs (no audit attributes)"
    if evaluation.slates == 0 or not np.isfinite(snips.value):
        return False, gain, "no logged slates to evaluate on" + tail
    if snips.support < min_support:
        return False, gain, f"{head}: too little support (the logs did not explore enough to judge it){tail}"
    if gain["lo"] < min_gain_lower_bound:
        return False, gain, f"{head}: gain's lower end {gain['lo']:+.4f} is below {min_gain_lower_bound:+.4f}{tail}"
    return True, gain, f"{head}: gain's lower end {gain['lo']:+.4f} is at least {min_gain_lower_bound:+.4f}{tail}"
