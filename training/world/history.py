"""Historical counsellor decisions and outcomes: what the logs of a competence centre would hold.

For each client and kind, the counsellor showed up to ``slate_size`` eligible items (hard rules from
:class:`features.eligibility.EligibilityEvaluator`), chosen by a noisy human policy: a points-like fit score
plus item popularity plus Gumbel noise, with a mild bias by audit group (women and Somali speakers are shown
fewer jobs, women more language/literacy/rehabilitative steps). This gives fairness audits something to find.

The client then accepts at most one item per slate (multinomial logit over true utility, a degree-route bias
and a mild position bias, against a "none" option), and starts, completes and is employed after six months with
probabilities that rise with utility. The "none" intercepts and the degree-route bias are solved so that the
*expected* base rates match domain.md §5 (44 % into training, half of it degree-oriented, 20 % into work,
work trial or apprenticeship, 15 % into work; apprenticeships 2.5 %, an assumption); the draws themselves stay
noisy (a well-fitting option still often fails).
``outcome_score`` is the true utility plus ``Normal(0, OUTCOME_NOISE_SD)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.eligibility import EligibilityEvaluator
from features.records import KINDS, ROUTES, AuditAttributes, ClientProfile, Opportunity
from training.world import calibrate as cal
from training.world.population import reference_date
from training.world.truth import Truth

POLICY_NAME: Final = "counsellor_v1"
SLATE_SIZE: Final = 8
OUTCOME_NOISE_SD: Final = 1.0
POSITION_BIAS: Final = -0.12  # per slate position, in the acceptance logit
POLICY_NOISE: Final = 0.8  # scale of the Gumbel noise in the counsellor's score
GROUP_BIAS: Final = {"female_job": -0.5, "female_language": 0.3, "somali_job": -0.3}
HISTORY_COLUMNS: Final = (
    "client_id",
    "opportunity_id",
    "kind",
    "cohort",
    "slate_id",
    "position",
    "accepted",
    "started",
    "completed",
    "employed_6m",
    "outcome_score",
    "shown_by",
)
_DEGREE: Final = np.array([ROUTES.index(r) for r in cal.DEGREE_ROUTES])
_NURTURING: Final = np.array([ROUTES.index(r) for r in ("language", "literacy", "rehabilitative")])


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def _bisect(
    f: Callable[[float], float], target: float, *, increasing: bool = False, lo: float = -20.0, hi: float = 20.0
) -> float:
    """Root of a monotone ``f(x) - target`` on ``[lo, hi]`` (clipped to the ends when out of reach)."""
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if (f(mid) > target) != increasing:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _eligible_pairs(
    clients: Sequence[ClientProfile], opportunities: Sequence[Opportunity], cohort_of: dict[str, int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    ev = EligibilityEvaluator(opportunities)
    cs, its = [], []
    for k, client in enumerate(clients):
        idx = ev.evaluate(client, reference_date(cohort_of[client.client_id])).eligible_indices
        cs.append(np.full(len(idx), k, dtype=np.int64))
        its.append(idx.astype(np.int64))
    if not cs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(cs), np.concatenate(its)


class _Slates:
    """Rows of all slates, sorted by (client, kind, position), with per-slate bookkeeping."""

    def __init__(
        self,
        c: npt.NDArray[np.int64],
        i: npt.NDArray[np.int64],
        kind: npt.NDArray[np.int64],
        score: npt.NDArray[np.float64],
        utility: npt.NDArray[np.float64],
        slate_size: int,
    ) -> None:
        order = np.lexsort((-score, kind, c))
        c, i, kind, utility = c[order], i[order], kind[order], utility[order]
        key = c * len(KINDS) + kind
        new = np.ones(len(key), dtype=bool)
        new[1:] = key[1:] != key[:-1]
        start = np.flatnonzero(new)
        group = np.cumsum(new) - 1
        pos = np.arange(len(key)) - start[group]
        keep = pos < slate_size
        self.c, self.i, self.kind, self.pos, self.u = c[keep], i[keep], kind[keep], pos[keep], utility[keep]
        key = key[keep]
        new = np.ones(len(key), dtype=bool)
        new[1:] = key[1:] != key[:-1]
        self.slate = np.cumsum(new) - 1
        self.n_slates = int(self.slate[-1]) + 1 if len(self.slate) else 0
        self.slate_kind = self.kind[new]
        self.slate_client = self.c[new]
        self.app = np.zeros(len(self.c), dtype=bool)


def simulate_history(
    rng: np.random.Generator,
    clients: Sequence[ClientProfile],
    audit: Sequence[AuditAttributes],
    opportunities: Sequence[Opportunity],
    cohort_of: dict[str, int],
    truth: Truth,
    *,
    slate_size: int = SLATE_SIZE,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Simulate slates, decisions and outcomes.

    Returns:
        The history table (:data:`HISTORY_COLUMNS`) and the solved behaviour parameters (for the manifest).
    """
    c, i = _eligible_pairs(clients, opportunities, cohort_of)
    comps = truth.components(c, i)
    utility = truth.utility_at(c, i)
    n_items = len(opportunities)
    popularity = 0.5 * truth.item_quality + rng.normal(0.0, 0.7, n_items)
    kind = np.array([KINDS.index(o.kind) for o in opportunities], dtype=np.int64)[i]
    route = np.array([ROUTES.index(o.route) if o.route else -1 for o in opportunities], dtype=np.int64)[i]
    female = np.array([a.gender == "female" for a in audit])[c]
    somali = np.array([a.mother_tongue == "so" for a in audit])[c]
    is_job = kind != KINDS.index("training")
    bias = (
        GROUP_BIAS["female_job"] * (female & is_job)
        + GROUP_BIAS["female_language"] * (female & np.isin(route, _NURTURING))
        + GROUP_BIAS["somali_job"] * (somali & is_job)
    )
    points = (
        2.0 * comps["ess_cov"]
        + comps["opt_cov"]
        + 1.5 * comps["goal_isco4"]
        + 0.5 * comps["goal_isco2"]
        + comps["prior_isco4"]
        - 0.5 * comps["lang_gap"]
        - comps["dist_km"] / 25.0
    )
    score = points + popularity[i] + bias + POLICY_NOISE * rng.gumbel(size=len(c))
    s = _Slates(c, i, kind, score, utility, slate_size)
    u = s.u
    s_route = np.array([ROUTES.index(o.route) if o.route else -1 for o in opportunities], dtype=np.int64)[s.i]
    degree = np.isin(s_route, _DEGREE)
    s.app = s_route == ROUTES.index("apprenticeship")
    params = _solve_behaviour(s, u, degree, len(clients))
    return _draw(rng, s, u, degree, params, clients, opportunities, cohort_of), params


def _choice_probs(
    s: _Slates, u: npt.NDArray[np.float64], degree: npt.NDArray[np.bool_], params: dict[str, float]
) -> npt.NDArray[np.float64]:
    z = u + params["degree_bias"] * degree + params["apprenticeship_bias"] * s.app + POSITION_BIAS * s.pos
    z = z - 10.0  # keeps exp in range; the "none" intercepts are shifted alike
    w = np.exp(z)
    none = np.exp(np.array([params[f"none_{k}"] for k in KINDS])[s.slate_kind] - 10.0)
    total = np.bincount(s.slate, weights=w, minlength=s.n_slates) + none
    return w / total[s.slate]


def _p_start(u: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return _sigmoid(0.8 + 0.5 * u)


def _solve_behaviour(
    s: _Slates, u: npt.NDArray[np.float64], degree: npt.NDArray[np.bool_], n_clients: int
) -> dict[str, float]:
    params = {"degree_bias": 0.0, "apprenticeship_bias": 0.0, **{f"none_{k}": 0.0 for k in KINDS}}
    ps = _p_start(u)
    n = max(n_clients, 1)
    t_kind, v_kind, w_kind = KINDS.index("training"), KINDS.index("vacancy"), KINDS.index("work_trial")
    app = s.app

    def rates(p: dict[str, float]) -> dict[str, float]:
        e = _choice_probs(s, u, degree, p) * ps
        train = (s.kind == t_kind) & ~app
        per_client = {
            name: np.bincount(s.c, weights=e * mask, minlength=n_clients)
            for name, mask in (
                ("train", train),
                ("deg", train & degree),
                ("vac", s.kind == v_kind),
                ("trial", s.kind == w_kind),
                ("app", app),
            )
        }
        union = 1 - (1 - per_client["vac"]) * (1 - per_client["trial"]) * (1 - per_client["app"])
        return {
            "train": float(per_client["train"].sum() / n),
            "deg_share": float(per_client["deg"].sum() / max(per_client["train"].sum(), 1e-9)),
            "vac": float(per_client["vac"].sum() / n),
            "union": float(union.sum() / n),
            "app": float(per_client["app"].sum() / n),
        }

    def with_(key: str, x: float) -> dict[str, float]:
        return {**params, key: x}

    for _ in range(3):
        params["degree_bias"] = _bisect(
            lambda x: rates(with_("degree_bias", x))["deg_share"], cal.DEGREE_SHARE_OF_TRAINING, increasing=True
        )
        params["none_training"] = _bisect(lambda x: rates(with_("none_training", x))["train"], cal.INTO_TRAINING)
        params["apprenticeship_bias"] = _bisect(
            lambda x: rates(with_("apprenticeship_bias", x))["app"], cal.APPRENTICESHIP_SHARE, increasing=True
        )
    params["none_vacancy"] = _bisect(lambda x: rates(with_("none_vacancy", x))["vac"], cal.INTO_WORK)
    params["none_work_trial"] = _bisect(
        lambda x: rates(with_("none_work_trial", x))["union"], cal.INTO_WORK_TRIAL_OR_APPRENTICESHIP_OR_WORK
    )
    return {k: round(v, 6) for k, v in params.items()}


def _draw(
    rng: np.random.Generator,
    s: _Slates,
    u: npt.NDArray[np.float64],
    degree: npt.NDArray[np.bool_],
    params: dict[str, float],
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    cohort_of: dict[str, int],
) -> pd.DataFrame:
    p = _choice_probs(s, u, degree, params)
    cum = np.cumsum(p)
    first = np.ones(len(p), dtype=bool)
    first[1:] = s.slate[1:] != s.slate[:-1]
    base = np.maximum.accumulate(np.where(first, cum - p, 0.0))
    within_hi = cum - base
    within_lo = within_hi - p
    draw = rng.random(s.n_slates)[s.slate]
    accepted = (within_lo < draw) & (draw <= within_hi)
    r = rng.random((4, len(u)))
    started = accepted & (r[0] < _p_start(u))
    is_training = s.kind == KINDS.index("training")
    completed = started & (r[1] < np.where(is_training, _sigmoid(0.3 + 0.6 * u), _sigmoid(1.0 + 0.6 * u)))
    route = np.array([ROUTES.index(o.route) if o.route else -1 for o in opportunities], dtype=np.int64)[s.i]
    emp_base = np.where(
        s.kind == KINDS.index("vacancy"),
        2.0,
        np.where(
            s.kind == KINDS.index("work_trial"),
            -1.0,
            np.where(degree | s.app, -0.3, np.where(route == ROUTES.index("workshop"), -1.0, -2.0)),
        ),
    )
    employed = completed & (r[2] < _sigmoid(emp_base + 0.5 * u))
    outcome = u + rng.normal(0.0, OUTCOME_NOISE_SD, len(u))
    client_ids = np.array([cl.client_id for cl in clients], dtype=object)[s.c]
    kinds = np.array(KINDS, dtype=object)[s.kind]
    return pd.DataFrame(
        {
            "client_id": client_ids,
            "opportunity_id": np.array([o.opportunity_id for o in opportunities], dtype=object)[s.i],
            "kind": kinds,
            "cohort": np.array([cohort_of[x] for x in client_ids], dtype=np.int64),
            "slate_id": [f"{a}/{b}" for a, b in zip(client_ids, kinds, strict=True)],
            "position": s.pos.astype(np.int64),
            "accepted": accepted,
            "started": started,
            "completed": completed,
            "employed_6m": employed,
            "outcome_score": outcome.astype(np.float64),
            "shown_by": POLICY_NAME,
        },
        columns=list(HISTORY_COLUMNS),
    )
