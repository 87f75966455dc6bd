"""Closed-loop simulation of deployment: the champion serves new cohorts, logs them, a challenger learns from the logs.

Round 0 is the world's counsellor history (its first three cohorts). In round ``r`` the cohort ``2025 + r``
arrives. The champion serves every client the top :attr:`SimulationConfig.k` of each kind through the serving
path's steps: the eligibility rules, the model's first stage and scores (``models.replay.scored_pool``, the
functions :meth:`models.package.PolkuModel.rank_groups` calls, without the explanations), and the serving
policy of ``models.exploration`` with its exact propensities. Clients choose with the world's choice model (true
utility, route biases, position bias, "none") and outcomes are drawn from the truth
(:func:`training.world.history.respond_to_slates`): the truth is used only there and to grade. The round's
logs join the training history, a challenger is trained on it (``training.train.fit_ranker``; its acceptance
model weights logged rows by their clipped, self-normalised inverse propensity), and the
existing gate rule (:func:`training.promote.decide`) decides on the round's cohort graded by the truth. Beside
it the off-policy estimate of the challenger's value from the round's logs alone (``training.ope``) is reported
with the true value of the same quantity (exact expected labels under the world's behaviour), and the decision
an offline gate would have taken.

Report per round: NDCG@10 of what was shown against the truth (and of the champion's deterministic order),
realised start, completion and 6-month employment rates of the cohort, congestion@10, the largest per-group
NDCG@10 gap (gender, mother tongue), the challenger's true NDCG@10, the OPE estimates next to the true value.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.records import KINDS
from models.exploration import Deterministic, PlackettLuce, SlatePolicy
from models.package import PolkuModel
from models.replay import scored_pool, target_propensities
from training import metrics as m
from training import ope
from training.config import TrainConfig
from training.datasets import PairTable, graded_labels
from training.simulate_ope import dcg_per_query, oracle_reward_logs, query_numbers, reward_model
from training.world import World
from training.world.generate import generate_world
from training.world.history import HISTORY_COLUMNS, expected_labels, respond_to_slates
from training.world.population import reference_date

logger = logging.getLogger(__name__)

BASE_COHORTS = (2023, 2024, 2025)


@dataclass(frozen=True)
class SimulationConfig:
    """One closed-loop run.

    Attributes:
        rounds: deployment rounds after the counsellor history.
        policy: ``points`` (the points ranker serves every round) or ``learned`` (trained, retrained each round).
        exploration: Plackett–Luce temperature of the serving policy (None: deterministic).
        clients: clients of the three history cohorts (the default world has 3000); later cohorts grow alike.
        opportunities: catalogue size (default ``clients // 6``, as the default world).
        seed: world and simulation seed (same seed = same world and cohorts for every loop).
        k: items shown per kind (NDCG@k, congestion@k).
        clip: weight clipping of the off-policy estimators.
        train: training configuration of the challengers.
    """

    rounds: int = 3
    policy: Literal["points", "learned"] = "learned"
    exploration: float | None = None
    clients: int = 3000
    opportunities: int | None = None
    seed: int = 7
    k: int = 10
    clip: float = ope.DEFAULT_CLIP
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def serving_policy(self) -> SlatePolicy:
        """The serving policy of every round."""
        return Deterministic() if self.exploration is None else PlackettLuce(self.exploration)

    @property
    def name(self) -> str:
        """``points``, ``learned`` or ``learned+exploration(T)``."""
        return self.policy if self.exploration is None else f"{self.policy}+exploration({self.exploration:g})"


def simulation_world(config: SimulationConfig) -> World:
    """The world of a run: the history cohorts, one cohort per round and one more (the last challenger's test)."""
    cohorts = (*BASE_COHORTS, *range(BASE_COHORTS[-1] + 1, BASE_COHORTS[-1] + config.rounds + 2))
    weights = np.linspace(1.0, 1.0 + 0.2 * (len(cohorts) - 1), len(cohorts))  # the population's growing intake
    total = int(round(config.clients * weights.sum() / weights[: len(BASE_COHORTS)].sum()))
    n_opp = config.opportunities if config.opportunities is not None else max(config.clients // 6, 60)
    return generate_world(total, config.seed, cohorts, n_opp)


@dataclass
class _Served:
    """The rows one model served to one cohort, sorted by (client, kind, position)."""

    client: npt.NDArray[np.int64]
    item: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    propensity: npt.NDArray[np.float64]
    ndcg: npt.NDArray[np.float64]  # per query (client, kind)
    query_client: npt.NDArray[np.int64]
    query_kind: npt.NDArray[np.int64]
    explored: int
    det_ndcg: npt.NDArray[np.float64]  # per query, the same scores' deterministic top k
    pools: dict[tuple[int, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


class _Context:
    """What every round needs from the world: eligibility, kinds, the truth's relevance, audit groups."""

    def __init__(self, world: World) -> None:
        from features.eligibility import EligibilityEvaluator

        self.world = world
        self.index = {c.client_id: n for n, c in enumerate(world.clients)}
        self.evaluator = EligibilityEvaluator(world.opportunities, taxonomy=world.truth.taxonomy)
        self.item_kind = np.array([KINDS.index(o.kind) for o in world.opportunities], dtype=np.int64)
        self.behaviour = {k: float(v) for k, v in world.manifest["behaviour"].items()}
        self.groups = {
            "gender": np.array([a.gender for a in world.audit], dtype=object),
            "mother_tongue": np.array([a.mother_tongue or "unknown" for a in world.audit], dtype=object),
        }

    def cohort(self, year: int) -> npt.NDArray[np.int64]:
        """World indices of the clients of one cohort."""
        cohort_of = self.world.cohort_of
        return np.array([n for n, c in enumerate(self.world.clients) if cohort_of[c.client_id] == year], dtype=np.int64)

    def candidates(self, g: int, year: int) -> list[npt.NDArray[np.int64]]:
        """Eligible catalogue positions of one client on the cohort's day, one array per kind."""
        eligible = self.evaluator.evaluate(self.world.clients[g], reference_date(year)).eligible_indices
        idx = np.asarray(eligible, dtype=np.int64)
        return [idx[self.item_kind[idx] == k] for k in range(len(KINDS))]

    def gains(self, g: int, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """True gains ``2^rel - 1`` of items for one client (grading and the estimator check only)."""
        rel = self.world.truth.relevance_of(self.world.truth.utility_at(np.full(items.size, g), items))
        return np.asarray(2.0 ** rel.astype(np.float64) - 1.0, dtype=np.float64)

    def idcg(self, g: int, pool: npt.NDArray[np.int64], k: int) -> float:
        """Ideal DCG@k over every eligible item of the query (0 when none is relevant)."""
        ideal = np.sort(self.gains(g, pool))[::-1][:k]
        return float(np.sum(ideal / np.log2(np.arange(2, ideal.size + 2))))

    def ndcg(self, g: int, pool: npt.NDArray[np.int64], shown: npt.NDArray[np.int64], k: int) -> float:
        """NDCG@k of ``shown`` (in order) against the truth, ideal over every eligible item of the query."""
        idcg = self.idcg(g, pool, k) if pool.size else 0.0
        if idcg <= 0:
            return float("nan")
        gains = self.gains(g, shown[:k])
        return float(np.sum(gains / np.log2(np.arange(2, gains.size + 2))) / idcg)


def _serve(ctx: _Context, model: PolkuModel, year: int, policy: SlatePolicy, k: int, seed: int) -> _Served:
    """Serve a cohort as the service does: eligibility, the model's first stage and scores, the policy's slate.

    The scores of each query's pool are kept (:attr:`_Served.pools`) and the deterministic top ``k`` of the same
    scores is graded too, so the cost of exploration and a replay under this model need no second pass.
    """
    items = model.encode_items(ctx.world.opportunities)
    ref = reference_date(year)
    cols: dict[str, list[Any]] = {n: [] for n in ("c", "i", "kind", "pos", "prop", "ndcg", "det", "qc", "qk")}
    pools: dict[tuple[int, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
    explored = 0
    for g in ctx.cohort(year):
        g = int(g)
        enc = model.encode_client(ctx.world.clients[g])
        for kind, eligible in enumerate(ctx.candidates(g, year)):
            pool, scores = scored_pool(model, enc, items, eligible, ref)
            pools[(g, kind)] = (pool, scores)
            slate = policy.select(scores, k, seed * 1_000_003 + g * 3 + kind)
            shown = pool[slate.order]
            cols["qc"].append(g)
            cols["qk"].append(kind)
            cols["ndcg"].append(ctx.ndcg(g, eligible, shown, k))
            det = shown if not slate.explored else pool[Deterministic().select(scores, k).order]
            cols["det"].append(cols["ndcg"][-1] if not slate.explored else ctx.ndcg(g, eligible, det, k))
            explored += int(slate.explored)
            cols["c"].extend([g] * shown.size)
            cols["i"].extend(shown.tolist())
            cols["kind"].extend([kind] * shown.size)
            cols["pos"].extend(range(shown.size))
            cols["prop"].extend(slate.propensities.tolist())
    return _Served(
        client=np.array(cols["c"], dtype=np.int64),
        item=np.array(cols["i"], dtype=np.int64),
        kind=np.array(cols["kind"], dtype=np.int64),
        position=np.array(cols["pos"], dtype=np.int64),
        propensity=np.array(cols["prop"], dtype=np.float64),
        ndcg=np.array(cols["ndcg"], dtype=np.float64),
        query_client=np.array(cols["qc"], dtype=np.int64),
        query_kind=np.array(cols["qk"], dtype=np.int64),
        explored=explored,
        det_ndcg=np.array(cols["det"], dtype=np.float64),
        pools=pools,
    )


def _group_gap(ctx: _Context, served: _Served, cfg: TrainConfig, deterministic: bool = False) -> float:
    """Largest per-group NDCG@k gap by gender or mother tongue (groups under ``cfg.min_group_size`` left out)."""
    per_query = served.det_ndcg if deterministic else served.ndcg
    gaps = [
        m.group_gap(m.mean_by_group(per_query, labels[served.query_client], min_size=cfg.min_group_size))
        for labels in ctx.groups.values()
    ]
    return float(max(gaps)) if gaps else 0.0


def _rates(ctx: _Context, year: int, logs: pd.DataFrame) -> dict[str, float]:
    n = max(len(ctx.cohort(year)), 1)
    return {
        f"{col}_rate": float(logs.loc[logs[col], "client_id"].nunique() / n)
        for col in ("started", "completed", "employed_6m")
    }


def _cascade(served: _Served) -> npt.NDArray[np.float64]:
    """Per served row, the probability of its slate down to its position (product of conditional propensities)."""
    query = query_numbers(served)
    log_p = np.log(served.propensity)
    out = np.empty_like(log_p)
    starts = np.flatnonzero(np.r_[True, query[1:] != query[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], query.size], strict=True):
        out[s:e] = np.exp(np.cumsum(log_p[s:e]))
    return out


def _ope(
    ctx: _Context,
    served: _Served,
    labels: npt.NDArray[np.float64],
    target: PolkuModel,
    policy: SlatePolicy,
    year: int,
    k: int,
    clip: float,
) -> dict[str, Any]:
    """Off-policy estimates of ``target`` (served with ``policy``) from one round's logs, and its true value.

    The value is the DCG@k of graded outcome labels per query (1 accepted .. 4 employed), so the true value is
    exact: expected labels under the world's behaviour on the slates the target would serve the same cohort.
    """
    counter = _serve(ctx, target, year, policy, k, seed=year + 17)
    query = query_numbers(served)
    pi = np.zeros(served.item.size)
    starts = np.flatnonzero(np.r_[True, query[1:] != query[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], query.size], strict=True):
        pool, scores = counter.pools[(int(served.client[s]), int(served.kind[s]))]
        pi[s:e] = target_propensities(pool, scores, served.item[s:e], policy)
    position = served.position + 1
    rhat_logged, rhat_target = reward_model(ctx, target, served, counter, labels, year)
    target_query = query_numbers(counter)
    logs = ope.LoggedSlates(
        query=query,
        position=position,
        logging_propensity=served.propensity,
        target_propensity=pi,
        reward=labels,
        reward_hat=rhat_logged,
        target_dm=np.asarray(
            np.bincount(target_query, weights=rhat_target * ope.dcg_weights(counter.position + 1)), dtype=np.float64
        ),
    )
    estimates = {name: e.as_dict() for name, e in ope.estimate_all(logs, clip=clip, samples=200).items()}
    # The estimator checked on NDCG@k itself: rewards are the truth's gains of the logged items, normalised by
    # each query's ideal DCG. No real log has these rewards; this only measures how far the estimators are off.
    oracle = oracle_reward_logs(ctx, served, logs, year, k, rhat_logged, rhat_target, counter)
    ndcg_estimates = {m: e.as_dict() for m, e in ope.estimate_all(oracle, clip=clip, samples=200).items()}
    exp = expected_labels(ctx.world.truth, ctx.behaviour, counter.client, counter.item, ctx.world.opportunities)
    true_value = dcg_per_query(exp["label"], counter)
    logged_value = dcg_per_query(labels, served)
    return {
        "metric": f"DCG@{k} of graded outcome labels per query",
        "estimates": estimates,
        "true_value": true_value,
        "logging_policy_value": logged_value,
        "challenger_true_ndcg": float(np.nanmean(counter.ndcg)),
        "ndcg_estimates": ndcg_estimates,
        "ndcg_true_value": float(np.nanmean(counter.ndcg)),
        "challenger_served": counter,
    }


def _train(
    world: World, history: pd.DataFrame, test_cohort: int, cfg: TrainConfig, which: str, clip: float
) -> PolkuModel:
    from training.train import build_models, fit_ranker

    keep = {c.client_id for c in world.clients if world.cohort_of[c.client_id] <= test_cohort}
    sub = World(
        [c for c in world.clients if c.client_id in keep],
        [a for a in world.audit if a.client_id in keep],
        world.opportunities,
        {cid: y for cid, y in world.cohort_of.items() if cid in keep},
        history.reset_index(drop=True),
        world.truth,
        world.manifest,
    )
    from training.datasets import build_training_data

    run_cfg = cfg.model_copy(update={"test_cohort": test_cohort})
    data = build_training_data(sub, run_cfg)
    if which == "points":
        return build_models(data, None, run_cfg)["points"]
    fit = fit_ranker(data, run_cfg, _ips_weights(data.train, history, clip))
    return build_models(fit.data, fit.ranker, run_cfg)["lightgbm"]


def _ips_weights(train: PairTable, history: pd.DataFrame, clip: float) -> npt.NDArray[np.float64] | None:
    """Acceptance weights of the training rows: logged rows get their clipped, self-normalised inverse propensity.

    A logged row's propensity is the probability of its slate down to its position (the product of the logged
    conditional propensities above and at it); counsellor-history rows and sampled unshown negatives keep 1.
    """
    if "slate_propensity" not in history or not history["slate_propensity"].notna().any():
        return None
    logged = history[history["slate_propensity"].notna()]
    first = logged.groupby(["client_id", "opportunity_id"])["slate_propensity"].max()
    key = pd.MultiIndex.from_arrays([train.client_ids, train.opportunity_ids])
    p = first.reindex(key).to_numpy(dtype=np.float64)
    weights = np.ones(len(train))
    has = np.isfinite(p) & train.shown
    if has.any():
        weights[has] = ope.ips_training_weights(p[has], clip)
    return weights


def _gate(
    served_champion: _Served,
    challenger_ndcg: npt.NDArray[np.float64],
    cfg: TrainConfig,
    challenger_gap: float,
    champion_gap: float,
) -> tuple[bool, str]:
    from training.evaluate import paired_difference
    from training.promote import decide

    gain = paired_difference(
        challenger_ndcg,
        served_champion.det_ndcg,
        served_champion.query_client,
        served_champion.query_kind,
        samples=cfg.bootstrap_samples,
        seed=cfg.seed,
    )["all"]
    return decide(
        gain,
        challenger_gap,
        max_group_gap=cfg.max_group_gap,
        min_gain_lower_bound=cfg.min_gain_lower_bound,
        reference_gap=champion_gap,
    )


def simulate(config: SimulationConfig, world: World | None = None) -> dict[str, Any]:
    """Run the loop; returns the report (JSON-ready): the configuration and one entry per round.

    Args:
        config: the run.
        world: a world from :func:`simulation_world` (generated from the config when omitted; pass one to run
            several loops on the same world).
    """
    t0 = time.perf_counter()
    world = world or simulation_world(config)
    ctx = _Context(world)
    years = sorted(set(world.cohort_of.values()))
    first_round = BASE_COHORTS[-1] + 1
    history = world.history[world.history["cohort"] < first_round].copy()
    policy = config.serving_policy
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 11]))
    champion = _train(world, history, first_round, config.train, config.policy, config.clip)
    rounds: list[dict[str, Any]] = []
    for r in range(1, config.rounds + 1):
        year = first_round + r - 1
        served = _serve(ctx, champion, year, policy, config.k, seed=config.seed + r)
        logs = respond_to_slates(
            rng,
            world.truth,
            ctx.behaviour,
            served.client,
            served.item,
            world.clients,
            world.opportunities,
            world.cohort_of,
            shown_by=f"{config.name}/round{r}",
        )
        labels = graded_labels(logs).astype(np.float64)
        entry: dict[str, Any] = {
            "round": r,
            "cohort": year,
            "clients": len(ctx.cohort(year)),
            "queries": int(served.ndcg.size),
            "explored_slates": served.explored,
            "ndcg_10": float(np.nanmean(served.ndcg)),
            "ndcg_10_deterministic": float(np.nanmean(served.det_ndcg)),
            **_rates(ctx, year, logs),
            "congestion_10": m.congestion_at_k(
                -served.position.astype(float),
                served.client * len(KINDS) + served.kind,
                served.item,
                config.k,
                n_items=len(world.opportunities),
            ),
            "max_group_gap_ndcg_10": _group_gap(ctx, served, config.train),
        }
        logged = logs[list(HISTORY_COLUMNS)].copy()
        logged["slate_propensity"] = _cascade(served)
        history = pd.concat([history, logged], ignore_index=True)
        if config.policy == "learned" and year + 1 <= years[-1]:
            challenger = _train(world, history, year + 1, config.train, "learned", config.clip)
            found = _ope(ctx, served, labels, challenger, policy, year, config.k, config.clip)
            counter: _Served = found.pop("challenger_served")
            gaps = (_group_gap(ctx, counter, config.train, True), _group_gap(ctx, served, config.train, True))
            ok, reason = _gate(served, counter.det_ndcg, config.train, *gaps)
            entry["challenger"] = {
                **found,
                "true_ndcg_10_deterministic": float(np.nanmean(counter.det_ndcg)),
                "promoted": ok,
                "gate": reason,
                "offline_gate": _offline(found),
            }
            if ok:
                champion = challenger
        rounds.append(entry)
        logger.info("simulation %s round %d: %s", config.name, r, {k: v for k, v in entry.items() if k != "challenger"})
    return {
        "loop": config.name,
        "policy": config.policy,
        "exploration": config.exploration,
        "seed": config.seed,
        "clients": config.clients,
        "rounds": rounds,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _offline(found: dict[str, Any]) -> dict[str, Any]:
    """What a gate on logged data alone would decide: SNIPS of the challenger vs the logged policy's own value."""
    snips = found["estimates"]["snips"]
    base = found["logging_policy_value"]
    if not np.isfinite(snips["value"]) or snips["support"] < 0.05:
        return {"promote": False, "reason": f"support {snips['support']:.3f}: the logs cannot judge the challenger"}
    lo = snips["low"] - base
    ok = bool(lo >= -0.005)
    return {"promote": ok, "reason": f"SNIPS {snips['value']:.4f} vs logged {base:.4f}, lower gain {lo:+.4f}"}
