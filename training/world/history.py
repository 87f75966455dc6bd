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
``outcome_score`` is the true utility plus ``Normal(0, OUTCOME_NOISE_SD)``; it is kept for analysis of the
world only (no real log could hold it) and training never reads it (``training.datasets.LOG_COLUMNS``).

Choice is not outcome. To reach "half of the trainings taken are degree-oriented" the acceptance step needs a
large ``degree_bias`` (3.26 logits in the default world, written to the manifest's ``behaviour``), while the
utility that outcomes follow and evaluation grades gives degree routes no bonus. A ranker trained on what was
chosen learns the preference (the model card's "Choice is not outcome"); the outcome stages below depend on the
utility only (and employment on the route's base rate), which is what lets ``models.outcome`` separate them.

Scale. A counsellor cannot weigh thousands of items: when a centre's catalogue exceeds :data:`PORTFOLIO_SIZE`,
it is split at random into portfolios of at most that size, each client is served by one portfolio's counsellor,
and the slate is drawn from the eligible items of that portfolio. At the default size (3000 clients, 500 items)
every centre has fewer items, so each client is still weighed against the whole eligible catalogue of the centre
and the split draws nothing. Likewise the behaviour parameters are solved on an evenly spaced sample of
:data:`SOLVE_MAX_CLIENTS` clients when there are more (expected rates, so the sample only adds a small error).
Eligibility is evaluated per dense (clients x portfolio) block by
:meth:`features.eligibility.EligibilityEvaluator.reason_codes`, the same rules the service applies, and only the
top ``slate_size`` items of each (client, kind) are kept, so 100k clients x 50k items run in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.eligibility import ClientTable, EligibilityEvaluator
from features.records import KINDS, ROUTES, AuditAttributes, ClientProfile, Opportunity
from training.world import calibrate as cal
from training.world.population import reference_date
from training.world.progress import progress_bar
from training.world.truth import Truth

POLICY_NAME: Final = "counsellor_v1"
PORTFOLIO_SIZE: Final = 300  # catalogue items one counsellor knows (a centre's catalogue is split above this)
SOLVE_MAX_CLIENTS: Final = 8000  # behaviour parameters are solved on an evenly spaced sample of this many clients
_BLOCK_CELLS: Final = 2_000_000  # clients x items per dense eligibility block
_CHUNK_CLIENTS: Final = 20_000  # clients per slate-selection chunk
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


def _portfolios(
    rng: np.random.Generator | None, items: npt.NDArray[np.int64], n_members: int
) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.int64]]:
    """Split a centre's items into counsellor portfolios of at most PORTFOLIO_SIZE and assign members to them."""
    n_port = -(-len(items) // PORTFOLIO_SIZE)
    if n_port <= 1 or rng is None:
        return [items], np.zeros(n_members, dtype=np.int64)
    parts = np.array_split(rng.permutation(items), n_port)
    return [np.sort(p) for p in parts], rng.integers(0, n_port, n_members)


def _policy_points(
    truth: Truth,
    c: npt.NDArray[np.int64],
    i: npt.NDArray[np.int64],
    ess: npt.NDArray[np.float64],
    opt: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The counsellor's points-like fit score of aligned pairs (before popularity, bias and noise)."""
    comps = truth.fit_terms(c, i, ess, opt)
    return (
        2.0 * comps["ess_cov"]
        + comps["opt_cov"]
        + 1.5 * comps["goal_isco4"]
        + 0.5 * comps["goal_isco2"]
        + comps["prior_isco4"]
        - 0.5 * comps["lang_gap"]
        - comps["dist_km"] / 25.0
    )


class _PairSource:
    """Eligible (client, item) pairs within each client's portfolio, with the counsellor's policy points.

    Items of other centres are never eligible, so each centre is handled alone. When a centre's catalogue is
    larger than :data:`PORTFOLIO_SIZE` it is split into portfolios (a random stream spawned from ``rng``, which
    leaves ``rng`` itself untouched) and each client sees the portfolio of one counsellor; otherwise a client
    sees the whole catalogue of their centre, exactly as if every eligible item were considered.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        clients: Sequence[ClientProfile],
        opportunities: Sequence[Opportunity],
        cohort_of: dict[str, int],
        truth: Truth,
    ) -> None:
        self.truth = truth
        self.n_items = len(opportunities)
        self.ev = EligibilityEvaluator(opportunities, taxonomy=truth.taxonomy)
        self.table = ClientTable.build(clients, self.ev.centres)
        self.on = np.array([reference_date(cohort_of[c.client_id]).toordinal() for c in clients], dtype=np.int64)
        portfolio_rng: np.random.Generator | None = None
        # (centre id, portfolio items) per portfolio, and each client's portfolio number (-1: centre has no items)
        self.portfolios: list[tuple[str, npt.NDArray[np.int64]]] = []
        self.portfolio_of = np.full(len(clients), -1, dtype=np.int64)
        for k, centre_id in enumerate(self.ev.centres):
            items = self.ev.items_of_centre(centre_id).astype(np.int64)
            members = np.flatnonzero(self.table.centre == k)
            if len(members) == 0 or len(items) == 0:
                continue
            if len(items) > PORTFOLIO_SIZE and portfolio_rng is None:
                portfolio_rng = rng.spawn(1)[0]
            parts, assign = _portfolios(portfolio_rng, items, len(members))
            self.portfolio_of[members] = assign + len(self.portfolios)
            self.portfolios.extend((centre_id, part) for part in parts)

    def pairs(self, lo: int, hi: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Pairs of clients ``lo..hi-1``, sorted by (client, item), and their policy points."""
        chunk = np.arange(lo, hi, dtype=np.int64)
        port_of = self.portfolio_of[lo:hi]
        out_c, out_i, out_p = [], [], []
        for p in np.unique(port_of[port_of >= 0]):
            _, port = self.portfolios[int(p)]
            rows = chunk[port_of == p]
            step = max(1, _BLOCK_CELLS // len(port))
            for b in range(0, len(rows), step):
                block = rows[b : b + step]
                codes = self.ev.reason_codes(self.table, port, self.on[block], rows=block)
                r, q = np.nonzero(codes == 0)
                ess, opt = self.truth.skill_overlap_block(block, port)
                c, i = block[r], port[q]
                out_c.append(c)
                out_i.append(i)
                out_p.append(_policy_points(self.truth, c, i, ess[r, q], opt[r, q]))
        if not out_c:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        c, i, points = np.concatenate(out_c), np.concatenate(out_i), np.concatenate(out_p)
        order = np.argsort(c * max(self.n_items, 1) + i)  # keys are unique
        return c[order], i[order], points[order]


def _select_slates(
    c: npt.NDArray[np.int64],
    kind: npt.NDArray[np.int64],
    score: npt.NDArray[np.float64],
    slate_size: int,
) -> npt.NDArray[np.intp]:
    """Positions of each (client, kind) slate's top ``slate_size`` pairs by descending score.

    Returned sorted by (client, kind, position); ties go to the earlier pair, as a stable sort would. Groups are
    small, so ``slate_size`` rounds of a segmented arg-max are much cheaper than sorting every pair.
    """
    n = len(c)
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    key = c * len(KINDS) + kind
    order = np.argsort(key, kind="stable")  # pairs come sorted by client (and item): nearly linear
    key = key[order]
    work = score[order].astype(np.float64, copy=True)
    new = np.ones(n, dtype=bool)
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    idx = np.arange(n)
    picked, picked_group, picked_pos = [], [], []
    for pos in range(slate_size):
        best = np.maximum.reduceat(work, starts)
        live = best > -np.inf
        if not live.any():
            break
        first = np.minimum.reduceat(np.where(work == best[group], idx, n), starts)[live]
        picked.append(first)
        picked_group.append(np.flatnonzero(live))
        picked_pos.append(np.full(len(first), pos))
        work[first] = -np.inf
    rows = np.concatenate(picked)
    ranked = np.lexsort((np.concatenate(picked_pos), np.concatenate(picked_group)))
    return order[rows[ranked]]


class _Slates:
    """Rows of all slates, sorted by (client, kind, position), with per-slate bookkeeping."""

    def __init__(
        self,
        c: npt.NDArray[np.int64],
        i: npt.NDArray[np.int64],
        kind: npt.NDArray[np.int64],
        utility: npt.NDArray[np.float64],
        app: npt.NDArray[np.bool_],
    ) -> None:
        # Rows arrive sorted by (client, kind, descending score), one slate per (client, kind).
        self.c, self.i, self.kind, self.u, self.app = c, i, kind, utility, app
        key = c * len(KINDS) + kind
        new = np.ones(len(key), dtype=bool)
        new[1:] = key[1:] != key[:-1]
        self.slate = np.cumsum(new) - 1
        self.pos = np.arange(len(key)) - np.flatnonzero(new)[self.slate]
        self.n_slates = int(self.slate[-1]) + 1 if len(self.slate) else 0
        self.slate_kind = self.kind[new]
        self.slate_client = self.c[new]

    def subset(self, mask: npt.NDArray[np.bool_]) -> _Slates:
        """The slates of the clients where ``mask`` (per row, constant within a client) holds, clients renumbered."""
        c = self.c[mask]
        _, c_new = np.unique(c, return_inverse=True)
        return _Slates(c_new.astype(np.int64), self.i[mask], self.kind[mask], self.u[mask], self.app[mask])


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
    source = _PairSource(rng, clients, opportunities, cohort_of, truth)
    n_items = len(opportunities)
    popularity = 0.5 * truth.item_quality + rng.normal(0.0, 0.7, n_items)
    item_kind = np.array([KINDS.index(o.kind) for o in opportunities], dtype=np.int64)
    item_route = np.array([ROUTES.index(o.route) if o.route else -1 for o in opportunities], dtype=np.int64)
    female_c = np.array([a.gender == "female" for a in audit], dtype=bool)
    somali_c = np.array([a.mother_tongue == "so" for a in audit], dtype=bool)
    keep_c: list[npt.NDArray[np.int64]] = []
    keep_i: list[npt.NDArray[np.int64]] = []
    # Chunks of whole clients in order, pairs sorted within: the Gumbel draws run in (client, item) order.
    with progress_bar(total=len(clients), desc="slates", unit="clients") as bar:
        for lo in range(0, len(clients), _CHUNK_CLIENTS):
            hi = min(lo + _CHUNK_CLIENTS, len(clients))
            cc, ii, points = source.pairs(lo, hi)
            kind, route = item_kind[ii], item_route[ii]
            female, somali = female_c[cc], somali_c[cc]
            is_job = kind != KINDS.index("training")
            bias = (
                GROUP_BIAS["female_job"] * (female & is_job)
                + GROUP_BIAS["female_language"] * (female & np.isin(route, _NURTURING))
                + GROUP_BIAS["somali_job"] * (somali & is_job)
            )
            score = points + popularity[ii] + bias + POLICY_NOISE * rng.gumbel(size=len(cc))
            rows = _select_slates(cc, kind, score, slate_size)
            keep_c.append(cc[rows])
            keep_i.append(ii[rows])
            bar.update(hi - lo)
    sc = np.concatenate(keep_c) if keep_c else np.zeros(0, dtype=np.int64)
    si = np.concatenate(keep_i) if keep_i else np.zeros(0, dtype=np.int64)
    s_route = item_route[si]
    s = _Slates(sc, si, item_kind[si], truth.utility_at(sc, si), s_route == ROUTES.index("apprenticeship"))
    u = s.u
    degree = np.isin(s_route, _DEGREE)
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
    if n_clients > SOLVE_MAX_CLIENTS:  # expected rates of an evenly spaced sample of clients (large worlds)
        step = -(-n_clients // SOLVE_MAX_CLIENTS)
        mask = s.c % step == 0
        s, u, degree, n_clients = s.subset(mask), u[mask], degree[mask], len(range(0, n_clients, step))
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


def _stage_probs(
    s: _Slates, u: npt.NDArray[np.float64], degree: npt.NDArray[np.bool_], opportunities: Sequence[Opportunity]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per row: P(start | accepted), P(complete | started) and P(employed after 6 months | completed)."""
    is_training = s.kind == KINDS.index("training")
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
    p_complete = np.where(is_training, _sigmoid(0.3 + 0.6 * u), _sigmoid(1.0 + 0.6 * u))
    return _p_start(u), p_complete, _sigmoid(emp_base + 0.5 * u)


def _draw(
    rng: np.random.Generator,
    s: _Slates,
    u: npt.NDArray[np.float64],
    degree: npt.NDArray[np.bool_],
    params: dict[str, float],
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    cohort_of: dict[str, int],
    shown_by: str = POLICY_NAME,
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
    p_start, p_complete, p_employ = _stage_probs(s, u, degree, opportunities)
    started = accepted & (r[0] < p_start)
    completed = started & (r[1] < p_complete)
    employed = completed & (r[2] < p_employ)
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
            "shown_by": shown_by,
        },
        columns=list(HISTORY_COLUMNS),
    )


def _served_slates(
    truth: Truth,
    client_idx: npt.NDArray[np.int64],
    item_idx: npt.NDArray[np.int64],
    opportunities: Sequence[Opportunity],
) -> tuple[_Slates, npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Slates of served rows (sorted by client, kind, position): the true utility and the degree-route flag."""
    route = np.array([ROUTES.index(o.route) if o.route else -1 for o in opportunities], dtype=np.int64)[item_idx]
    kind = np.array([KINDS.index(o.kind) for o in opportunities], dtype=np.int64)[item_idx]
    u = truth.utility_at(client_idx, item_idx)
    s = _Slates(client_idx, item_idx, kind, u, route == ROUTES.index("apprenticeship"))
    return s, u, np.isin(route, _DEGREE)


def respond_to_slates(
    rng: np.random.Generator,
    truth: Truth,
    behaviour: dict[str, float],
    client_idx: npt.NDArray[np.int64],
    item_idx: npt.NDArray[np.int64],
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    cohort_of: dict[str, int],
    shown_by: str,
) -> pd.DataFrame:
    """History rows (:data:`HISTORY_COLUMNS`) of clients' choices and outcomes on slates another policy served.

    The counsellor history's choice model (true utility, route biases, position bias, "none" per kind with the
    world's solved intercepts) and outcome draws; rows sorted by (client, kind, position), world indices.
    """
    s, u, degree = _served_slates(truth, client_idx, item_idx, opportunities)
    return _draw(rng, s, u, degree, behaviour, clients, opportunities, cohort_of, shown_by)


def expected_labels(
    truth: Truth,
    behaviour: dict[str, float],
    client_idx: npt.NDArray[np.int64],
    item_idx: npt.NDArray[np.int64],
    opportunities: Sequence[Opportunity],
) -> dict[str, npt.NDArray[np.float64]]:
    """Per served row, exact expected outcomes under the world's behaviour.

    Probabilities of ``accepted``, ``started``, ``completed``, ``employed_6m``; ``label`` is the expected graded label.
    """
    s, u, degree = _served_slates(truth, client_idx, item_idx, opportunities)
    p_acc = _choice_probs(s, u, degree, behaviour)
    p_start, p_complete, p_employ = _stage_probs(s, u, degree, opportunities)
    started = p_acc * p_start
    completed = started * p_complete
    employed = completed * p_employ
    return {
        "accepted": p_acc,
        "started": started,
        "completed": completed,
        "employed_6m": employed,
        "label": p_acc + started + completed + employed,
    }
