"""Training data from a world's recorded history: time split, graded labels, acceptance counts, pair matrices.

Labels come only from what the history recorded (noisy and biased by the policy that showed the items):
employed within 6 months (4) > completed (3) > started (2) > accepted (1) > shown and not accepted (0).
Only the log columns of :data:`LOG_COLUMNS` are read: the world's truth (and the history's noisy
``outcome_score``, which no real log could hold) is never read here; it is used only by
:mod:`training.evaluate` and the oracle. ``tests/training/test_no_truth.py`` checks this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.eligibility import EligibilityEvaluator
from features.pairs import PairBatch, PairFeaturizer
from features.records import ClientProfile, Opportunity
from training.config import TrainConfig

if TYPE_CHECKING:
    from training.feedback import FeedbackData
    from training.world import World

logger = logging.getLogger(__name__)

QUERY_SEP: Final = "|"
# Outcome columns in increasing order of value; a row's label is the index (+1) of the last one that is true.
LABEL_STEPS: Final[tuple[str, ...]] = ("accepted", "started", "completed", "employed_6m")
MAX_LABEL: Final = len(LABEL_STEPS)
LOG_COLUMNS: Final[tuple[str, ...]] = (
    "client_id",
    "opportunity_id",
    "kind",
    "cohort",
    "slate_id",
    "position",
    *LABEL_STEPS,
    "shown_by",
)
"""History columns a real centre's log holds (what was shown where, and what followed); nothing else is read."""


def log_columns(history: pd.DataFrame) -> pd.DataFrame:
    """The history restricted to :data:`LOG_COLUMNS` (raises ``KeyError`` naming a missing column)."""
    missing = [c for c in LOG_COLUMNS if c not in history.columns]
    if missing:
        raise KeyError(f"history lacks the log column(s) {', '.join(missing)}")
    return history.loc[:, list(LOG_COLUMNS)]


def query_id(client_id: str, kind: str) -> str:
    """The ranking query of one client and one opportunity kind (``client|kind``)."""
    return f"{client_id}{QUERY_SEP}{kind}"


def cohort_reference_date(cohort: int) -> date:
    """Reference date of a cohort: 1 September of its year."""
    return date(cohort, 9, 1)


def graded_labels(history: pd.DataFrame) -> npt.NDArray[np.int32]:
    """Graded label per history row: 4 employed_6m, 3 completed, 2 started, 1 accepted, 0 shown only.

    Args:
        history: the world's history (columns accepted, started, completed, employed_6m).

    Returns:
        int32 label per row.
    """
    label = np.zeros(len(history), dtype=np.int32)
    for grade, column in enumerate(LABEL_STEPS, start=1):
        label = np.where(history[column].to_numpy(dtype=bool), np.int32(grade), label)
    return label.astype(np.int32)


def acceptance_counts(history: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Opportunity id -> (times accepted, times shown) over the given history rows.

    Args:
        history: history rows of the training period only.

    Returns:
        Counts per opportunity id.
    """
    if history.empty:
        return {}
    grouped = history.groupby("opportunity_id", sort=True)["accepted"].agg(["sum", "count"])
    return {str(oid): (int(row["sum"]), int(row["count"])) for oid, row in grouped.iterrows()}


@dataclass(frozen=True)
class TimeSplit:
    """Clients split by cohort: train on the earlier cohorts, test on the latest.

    Attributes:
        train_cohorts: cohort years used for training.
        test_cohort: cohort year used for testing.
        train_client_ids: clients of the training cohorts.
        test_client_ids: clients of the test cohort.
    """

    train_cohorts: tuple[int, ...]
    test_cohort: int
    train_client_ids: tuple[str, ...]
    test_client_ids: tuple[str, ...]


def time_split(world: World, test_cohort: int | None = None) -> TimeSplit:
    """Split the world's clients by cohort.

    Args:
        world: the synthetic world.
        test_cohort: cohort to test on (default: the latest).

    Returns:
        The split.

    Raises:
        ValueError: ``test_cohort`` is not a cohort of the world, or no cohort precedes it.
    """
    cohorts = sorted(set(world.cohort_of.values()))
    test = cohorts[-1] if test_cohort is None else test_cohort
    if test not in cohorts:
        raise ValueError(f"test_cohort {test} is not among the world's cohorts {cohorts}")
    train = tuple(c for c in cohorts if c < test)
    if not train:
        raise ValueError(f"no cohort before the test cohort {test}: the world needs at least two cohorts")
    ids = [c.client_id for c in world.clients]
    return TimeSplit(
        train_cohorts=train,
        test_cohort=test,
        train_client_ids=tuple(i for i in ids if world.cohort_of[i] in train),
        test_client_ids=tuple(i for i in ids if world.cohort_of[i] == test),
    )


@dataclass(frozen=True)
class PairTable:
    """Feature rows of labelled pairs with their query ids.

    Attributes:
        X: float32 features ``(n, n_features)``.
        y: int32 graded labels.
        query_ids: ``client|kind`` per row.
        client_ids: client per row.
        opportunity_ids: opportunity per row.
        kinds: opportunity kind per row.
        shown: whether the pair was in the recorded history (False for sampled unshown negatives).
        feature_names: column names.
        position: the pair's (first) slate position when shown and recorded, -1 otherwise.
        weight: 1 for shown rows; for a sampled unshown negative, the number of unshown eligible items of its
            query divided by the number sampled (an inverse sampling rate, so sums over rows estimate sums over
            every eligible pair).
        from_history: True for rows of the world's recorded slates, False for rows from recorded feedback.
    """

    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int32]
    query_ids: npt.NDArray[np.str_]
    client_ids: npt.NDArray[np.str_]
    opportunity_ids: npt.NDArray[np.str_]
    kinds: npt.NDArray[np.str_]
    shown: npt.NDArray[np.bool_]
    feature_names: tuple[str, ...]
    position: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    weight: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    from_history: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))

    def __post_init__(self) -> None:
        n = int(self.y.size)
        if self.position.size != n:
            object.__setattr__(self, "position", np.where(self.shown, 0, -1).astype(np.int64))
        if self.weight.size != n:
            object.__setattr__(self, "weight", np.ones(n, dtype=np.float32))
        if self.from_history.size != n:
            object.__setattr__(self, "from_history", np.ones(n, dtype=bool))

    def __len__(self) -> int:
        return int(self.y.size)

    @property
    def n_queries(self) -> int:
        """Number of distinct queries."""
        return int(np.unique(self.query_ids).size)

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame: ids, features, ``label`` (for ``mlflow.data``)."""
        df = pd.DataFrame(self.X, columns=list(self.feature_names))
        df.insert(0, "query_id", self.query_ids)
        df.insert(1, "client_id", self.client_ids)
        df.insert(2, "opportunity_id", self.opportunity_ids)
        df.insert(3, "kind", self.kinds)
        df["shown"] = self.shown
        df["position"] = self.position
        df["label"] = self.y
        return df


@dataclass(frozen=True)
class TrainingData:
    """Everything a training run needs from the world, built from history only.

    Attributes:
        split: the time split.
        featurizer: fitted on the training period's acceptance counts (the one that is packaged).
        train: rows to fit on.
        valid: rows for early stopping (held-out training clients), or None.
        acceptance: training-period acceptance counts the featurizer was fitted with.
        feedback: the rows from recorded feedback (with their sampled negatives), also part of ``train``;
            None when no feedback was given.
        feedback_stats: counts about the feedback used (clients, events, rows, skipped events, bad lines).
    """

    split: TimeSplit
    featurizer: PairFeaturizer
    train: PairTable
    valid: PairTable | None
    acceptance: Mapping[str, tuple[int, int]]
    feedback: PairTable | None = None
    feedback_stats: Mapping[str, int] = field(default_factory=dict)


def _labelled_pairs(history: pd.DataFrame) -> pd.DataFrame:
    """One row per (client, opportunity) with the best label and the first position over its showings."""
    log = log_columns(history)
    df = log[["client_id", "opportunity_id", "kind"]].copy()
    df["label"] = graded_labels(log)
    df["shown"] = True
    df["position"] = log["position"].to_numpy(dtype=np.int64)
    df["weight"] = 1.0
    return df.groupby(["client_id", "opportunity_id", "kind"], as_index=False, sort=True).agg(
        label=("label", "max"), shown=("shown", "any"), position=("position", "min"), weight=("weight", "first")
    )


def _unshown_negatives(
    world: World,
    pairs: pd.DataFrame,
    per_query: int,
    rng: np.random.Generator,
    *,
    clients: Sequence[ClientProfile] | None = None,
    reference_dates: Mapping[str, date] | None = None,
) -> pd.DataFrame:
    """Per training query, up to ``per_query`` eligible items of the same kind never shown to the client (label 0).

    ``clients`` and ``reference_dates`` default to the world's clients at their cohort's reference date.
    """
    evaluator = EligibilityEvaluator(world.opportunities)
    opp_ids = np.array(evaluator.opportunity_ids)
    kinds = np.array([o.kind for o in evaluator.opportunities])
    by_id = {c.client_id: c for c in (world.clients if clients is None else clients)}
    rows: list[tuple[str, str, str, float]] = []
    shown = pairs.groupby("client_id")["opportunity_id"].agg(set).to_dict()
    for (client_id, kind), _ in pairs.groupby(["client_id", "kind"], sort=True):
        client = by_id[str(client_id)]
        ref = (
            reference_dates[client.client_id]
            if reference_dates is not None
            else cohort_reference_date(world.cohort_of[client.client_id])
        )
        mask = evaluator.evaluate(client, ref).mask
        cand = opp_ids[mask & (kinds == kind)]
        cand = np.array([o for o in cand if o not in shown.get(client_id, set())])
        if cand.size:
            take = min(per_query, cand.size)
            for oid in rng.choice(cand, size=take, replace=False):
                rows.append((str(client_id), str(oid), str(kind), cand.size / take))
    extra = pd.DataFrame(rows, columns=["client_id", "opportunity_id", "kind", "weight"])
    extra["label"] = 0
    extra["shown"] = False
    extra["position"] = -1
    return extra


def build_pair_table(
    featurizer: PairFeaturizer,
    pairs: pd.DataFrame,
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    cohort_of: Mapping[str, int],
    reference_dates: Mapping[str, date] | None = None,
    *,
    from_history: bool = True,
) -> PairTable:
    """Featurize labelled pairs, each client at its cohort's reference date (or its own, when given).

    Args:
        featurizer: a fitted featurizer.
        pairs: columns client_id, opportunity_id, kind, label, shown (and position, weight when known).
        clients: client profiles (a superset of the pairs' clients).
        opportunities: the catalogue.
        cohort_of: client id -> cohort year.
        reference_dates: client id -> reference date, overriding the cohort's (recorded feedback: the date of
            the client's first decision).
        from_history: whether the rows come from the world's recorded slates (False: recorded feedback).

    Returns:
        The feature table, rows in the order of ``pairs``.
    """
    client_pos = {c.client_id: i for i, c in enumerate(clients)}
    opp_pos = {o.opportunity_id: i for i, o in enumerate(opportunities)}
    client_ids = pairs["client_id"].astype(str).to_numpy()
    opp_ids = pairs["opportunity_id"].astype(str).to_numpy()
    batch = PairBatch(
        clients=clients,
        opportunities=opportunities,
        client_idx=np.array([client_pos[c] for c in client_ids], dtype=np.int64),
        opp_idx=np.array([opp_pos[o] for o in opp_ids], dtype=np.int64),
        reference_dates=[
            reference_dates[c.client_id]
            if reference_dates is not None and c.client_id in reference_dates
            else cohort_reference_date(cohort_of[c.client_id])
            for c in clients
        ],
    )
    X = featurizer.transform(batch)
    kinds = pairs["kind"].astype(str).to_numpy()
    return PairTable(
        X=X,
        y=pairs["label"].to_numpy(dtype=np.int32),
        query_ids=np.array([query_id(c, k) for c, k in zip(client_ids, kinds, strict=True)], dtype=str),
        client_ids=client_ids.astype(str),
        opportunity_ids=opp_ids.astype(str),
        kinds=kinds.astype(str),
        shown=pairs["shown"].to_numpy(dtype=bool),
        feature_names=tuple(str(n) for n in featurizer.get_feature_names_out()),
        position=(
            pairs["position"].to_numpy(dtype=np.int64)
            if "position" in pairs
            else np.where(pairs["shown"].to_numpy(dtype=bool), 0, -1).astype(np.int64)
        ),
        weight=(pairs["weight"].to_numpy(dtype=np.float32) if "weight" in pairs else np.ones(len(pairs), np.float32)),
        from_history=np.full(len(pairs), from_history, dtype=bool),
    )


def leave_client_out_rates(
    featurizer: PairFeaturizer,
    client_ids: npt.NDArray[np.str_],
    opportunity_ids: npt.NDArray[np.str_],
    history: pd.DataFrame,
) -> npt.NDArray[np.float32]:
    """Smoothed acceptance rate of each row's item with the row's own client's showings left out.

    The packaged featurizer keeps the full training-period counts; on training rows those counts include the
    row's own acceptance (a label leak), so training rows get the same smoothing over the counts without
    the client (leave-one-client-out).

    Args:
        featurizer: the fitted featurizer (its acceptance table, prior rate and prior strength).
        client_ids: client per row.
        opportunity_ids: opportunity per row.
        history: the training-period history the acceptance table was counted from.

    Returns:
        float32 rate per row.
    """
    table: Mapping[str, tuple[int, int]] = featurizer.acceptance_
    prior = float(featurizer.prior_rate_)
    strength = max(float(featurizer.prior_strength), 0.0)
    own = history.groupby(["client_id", "opportunity_id"], sort=False)["accepted"].agg(["sum", "count"])
    key = pd.MultiIndex.from_arrays([client_ids, opportunity_ids])
    own = own.reindex(key, fill_value=0)
    totals = np.array([table.get(str(o), (0, 0)) for o in opportunity_ids], dtype=np.float64).reshape(-1, 2)
    accepted = totals[:, 0] - own["sum"].to_numpy(dtype=np.float64)
    shown = totals[:, 1] - own["count"].to_numpy(dtype=np.float64)
    denom = shown + strength
    rate = np.where(denom > 0, (accepted + strength * prior) / np.maximum(denom, 1e-12), prior)
    return rate.astype(np.float32)


def _without_own_acceptance(table: PairTable, featurizer: PairFeaturizer, history: pd.DataFrame) -> PairTable:
    """The table with ``hist_accept_rate`` recomputed leave-one-client-out (see :func:`leave_client_out_rates`)."""
    if "hist_accept_rate" not in table.feature_names or len(table) == 0:
        return table
    X = table.X.copy()
    col = table.feature_names.index("hist_accept_rate")
    X[:, col] = leave_client_out_rates(featurizer, table.client_ids, table.opportunity_ids, history)
    return replace(table, X=X)


def _fitted_featurizer(
    clients: Sequence[ClientProfile],
    opportunities: Sequence[Opportunity],
    acceptance: Mapping[str, tuple[int, int]],
) -> PairFeaturizer:
    empty = PairBatch(clients, opportunities, np.zeros(0, np.int64), np.zeros(0, np.int64))
    return PairFeaturizer().fit(empty, acceptance=acceptance)


def _feedback_table(
    world: World,
    featurizer: PairFeaturizer,
    feedback: FeedbackData,
    fb_hist: pd.DataFrame,
    clients: Sequence[ClientProfile],
    reference_dates: Mapping[str, date],
    cfg: TrainConfig,
) -> PairTable:
    """Feature rows of recorded feedback (graded labels) plus sampled unshown negatives per feedback query."""
    pairs = _labelled_pairs(fb_hist)
    if cfg.unshown_negatives > 0 and not pairs.empty:
        rng = np.random.default_rng([cfg.seed, len(feedback.clients), len(fb_hist)])
        negatives = _unshown_negatives(
            world, pairs, cfg.unshown_negatives, rng, clients=clients, reference_dates=reference_dates
        )
        pairs = pd.concat([pairs, negatives], ignore_index=True)
    return build_pair_table(featurizer, pairs, clients, world.opportunities, {}, reference_dates, from_history=False)


def _concat_tables(a: PairTable, b: PairTable) -> PairTable:
    """Rows of ``a`` followed by rows of ``b`` (same feature names)."""
    return PairTable(
        X=np.concatenate([a.X, b.X]).astype(np.float32),
        y=np.concatenate([a.y, b.y]).astype(np.int32),
        query_ids=np.concatenate([a.query_ids, b.query_ids]).astype(str),
        client_ids=np.concatenate([a.client_ids, b.client_ids]).astype(str),
        opportunity_ids=np.concatenate([a.opportunity_ids, b.opportunity_ids]).astype(str),
        kinds=np.concatenate([a.kinds, b.kinds]).astype(str),
        shown=np.concatenate([a.shown, b.shown]).astype(bool),
        feature_names=a.feature_names,
        position=np.concatenate([a.position, b.position]).astype(np.int64),
        weight=np.concatenate([a.weight, b.weight]).astype(np.float32),
        from_history=np.concatenate([a.from_history, b.from_history]).astype(bool),
    )


def build_training_data(
    world: World, config: TrainConfig | None = None, feedback: FeedbackData | None = None
) -> TrainingData:
    """Time split, labels and feature matrices from the world's history (the truth is not read).

    The training queries are (client, kind) of the training cohorts' recorded slates. A share of the training
    clients (``config.valid_fraction``) is held out for early stopping. Acceptance counts come from the training
    period only; on the training and validation rows ``hist_accept_rate`` leaves the row's own client out.

    Recorded feedback (counsellors' decisions and outcomes exported by the service) is appended to the training
    rows only (never to validation or to the test cohort, which is graded by the world's truth): one query per
    (pseudonymous client, kind), graded labels, features at the client's first decision date, plus sampled
    unshown negatives like the world's queries. Its decisions also count in the acceptance table. Events on
    opportunities missing from the world's catalogue are counted and skipped.

    Args:
        world: the synthetic world.
        config: run configuration (default :class:`TrainConfig`).
        feedback: recorded feedback from :func:`training.feedback.read_feedback_export` (None = world only).

    Returns:
        The training data with a fitted featurizer.
    """
    cfg = config or TrainConfig()
    split = time_split(world, cfg.test_cohort)
    hist = log_columns(world.history)
    world_hist = hist[hist["client_id"].isin(set(split.train_client_ids))]
    train_hist = world_hist  # the training period: the world's earlier cohorts plus any recorded feedback
    fb = None
    if feedback is not None:
        from training.feedback import feedback_history

        fb = feedback_history(feedback, world.opportunities)
        clash = set(fb.reference_dates) & set(world.cohort_of)
        if clash:
            raise ValueError(f"{len(clash)} feedback client id(s) collide with the world's client ids")
        if not fb.history.empty:
            train_hist = pd.concat([world_hist, log_columns(fb.history)], ignore_index=True)
    acceptance = acceptance_counts(train_hist)
    featurizer = _fitted_featurizer(world.clients, world.opportunities, acceptance)
    pairs = _labelled_pairs(world_hist)
    rng = np.random.default_rng(cfg.seed)
    if cfg.unshown_negatives > 0:
        pairs = pd.concat([pairs, _unshown_negatives(world, pairs, cfg.unshown_negatives, rng)], ignore_index=True)
    train_clients = np.array(sorted(set(pairs["client_id"].astype(str))))
    n_valid = int(round(cfg.valid_fraction * train_clients.size))
    valid_clients = set(rng.choice(train_clients, size=n_valid, replace=False)) if n_valid > 0 else set()
    is_valid = pairs["client_id"].isin(valid_clients).to_numpy()
    train = build_pair_table(featurizer, pairs[~is_valid], world.clients, world.opportunities, world.cohort_of)
    train = _without_own_acceptance(train, featurizer, train_hist)
    fb_table: PairTable | None = None
    fb_stats: dict[str, int] = {}
    if fb is not None and feedback is not None:
        fb_stats = {
            "clients": len(fb.clients),
            "events": feedback.n_events,
            "events_used": fb.events_used,
            "skipped_unknown_opportunity": fb.skipped_unknown_opportunity,
            "bad_lines": len(feedback.bad_lines),
            "pairs": len(fb.history),
            "rows": 0,
        }
        if not fb.history.empty:
            fb_table = _feedback_table(world, featurizer, feedback, fb.history, fb.clients, fb.reference_dates, cfg)
            fb_table = _without_own_acceptance(fb_table, featurizer, train_hist)
            train = _concat_tables(train, fb_table)
            fb_stats["rows"] = len(fb_table)
    valid = (
        _without_own_acceptance(
            build_pair_table(featurizer, pairs[is_valid], world.clients, world.opportunities, world.cohort_of),
            featurizer,
            train_hist,
        )
        if is_valid.any()
        else None
    )
    logger.info(
        "training data: %d rows / %d queries (valid %d rows, feedback %d rows), cohorts %s -> test %d",
        len(train),
        train.n_queries,
        0 if valid is None else len(valid),
        0 if fb_table is None else len(fb_table),
        split.train_cohorts,
        split.test_cohort,
    )
    return TrainingData(
        split=split,
        featurizer=featurizer,
        train=train,
        valid=valid,
        acceptance=acceptance,
        feedback=fb_table,
        feedback_stats=fb_stats,
    )
