"""Fitting the outcome-aware ranker: acceptance model, item effects, slate calibration and outcome stages.

The steps interleave because each needs the one before (``models.outcome`` documents the model itself):

1. the acceptance lambdarank on the training rows (early stopping on the validation clients' shown rows);
2. the counsellor-show effect of each item (``training.item_effects.show_expectations``, cross-fitted);
3. the slate logit that calibrates the acceptance score, with position and show effect, on recorded slates;
4. the acceptance effect of each item (accepted vs the slate logit's expectation), shrunk by kind;
5. the outcome stages on rows whose item effects leave their own client out;
6. the outcome effect of each item (outcome events vs the stages' expectation), shrunk by kind.

The item effects (4 + 2, and 6) go into the featurizer, so serving looks them up by opportunity id. Only
recorded log columns are used (labels, positions, shown); the world's truth is never read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from features.records import KINDS
from models.outcome import OutcomeAwareRanker
from models.rankers import BoosterTrainer
from models.slates import fit_slate_logit
from training import item_effects as ie
from training.config import TrainConfig
from training.datasets import PairTable, TrainingData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutcomeFit:
    """What :func:`fit_outcome_ranker` produced.

    Attributes:
        ranker: the fitted ranker.
        effects: the item effects (also stored in ``data.featurizer``).
        data: the training data with the item-effect columns of its rows filled in (own client left out).
        diagnostics: numbers for the run's parameters (calibration, penalties, item effects).
        validation: log-loss of each outcome stage on the held-out training clients (``valid_logloss_<stage>``).
    """

    ranker: OutcomeAwareRanker
    effects: ie.ItemEffects
    data: TrainingData
    diagnostics: dict[str, Any]
    validation: dict[str, float]


def _lgb_params(cfg: TrainConfig, n_rows: int) -> dict[str, Any]:
    params: dict[str, Any] = {"seed": cfg.seed, **cfg.lgb_params}
    if "min_data_in_leaf" in params:
        # The regularising leaf size is tuned for the default world (~85k rows); small worlds need smaller leaves.
        params["min_data_in_leaf"] = min(int(params["min_data_in_leaf"]), max(20, n_rows // 400))
    return params


def _concat(a: PairTable, b: PairTable | None) -> PairTable:
    if b is None:
        return a
    from training.datasets import _concat_tables

    return _concat_tables(a, b)


def _with_column(table: PairTable, col: int, values: npt.NDArray[np.float64]) -> PairTable:
    X = table.X.copy()
    X[:, col] = values.astype(np.float32)
    return replace(table, X=X)


def _log_loss(p: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]) -> float:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(np.where(y, np.log(q), np.log(1 - q)))) if y.size else float("nan")


def fit_outcome_ranker(
    data: TrainingData,
    cfg: TrainConfig,
    sample_weight: npt.NDArray[np.float64] | None = None,
    *,
    booster_trainer: BoosterTrainer | None = None,
) -> OutcomeFit:
    """Run the six steps of the module docstring on one training set.

    Args:
        data: from :func:`training.datasets.build_training_data` (its featurizer receives the item effects).
        cfg: run configuration (LightGBM parameters, rounds, value weights, seed).
        booster_trainer: train the acceptance booster elsewhere (``polku train --dask``).
        sample_weight: per row of ``data.train``, a weight of the acceptance lambdarank (inverse-propensity
            weights of logged rows, ``training.ope.ips_training_weights``); None = all 1.

    Returns:
        The fitted ranker, the item effects and the updated training data.
    """
    train, valid = data.train, data.valid
    names = train.feature_names
    ranker = OutcomeAwareRanker(
        params=_lgb_params(cfg, len(train)),
        num_boost_round=cfg.num_boost_round,
        early_stopping_rounds=cfg.early_stopping_rounds,
        weights=cfg.value_weights,
        seed=cfg.seed,
        booster_trainer=booster_trainer,
    )
    eval_set = None
    if valid is not None and valid.shown.any():
        m = valid.shown
        eval_set = (valid.X[m], valid.y[m], valid.query_ids[m])
    ranker.fit_acceptance(
        train.X, train.y, train.query_ids, feature_names=names, eval_set=eval_set, sample_weight=sample_weight
    )

    rows = _concat(train, valid)
    n_train = len(train)
    hist = rows.from_history
    items, item = np.unique(rows.opportunity_ids, return_inverse=True)
    item = item.reshape(-1)
    n_items = items.size
    kind_rows = ie.kinds_of(rows.kinds.tolist())
    item_kind = np.zeros(n_items, dtype=np.int64)
    item_kind[item] = kind_rows
    shown = rows.shown.astype(np.float64)

    # 2. counsellor-show effect (history rows only: feedback rows come from another policy)
    h = np.flatnonzero(hist)
    p_show = np.zeros(len(rows))
    p_show[h] = ie.show_expectations(
        rows.X[h][:, ranker.acceptance_columns_], rows.shown[h], rows.weight[h], rows.client_ids[h], cfg.seed
    )
    in_hist = hist.astype(np.float64)
    o_show = ie.per_item_counts(item, shown * in_hist, n_items)
    e_show = ie.per_item_counts(item, rows.weight * p_show * in_hist, n_items)
    show_eff, show_a = ie.shrunk_log_ratio(o_show, e_show, item_kind)
    show_row = np.where(hist, ie.leave_one_out(o_show, e_show, show_a, item, shown * in_hist, p_show), show_eff[item])

    # 3. slate logit over recorded slates
    f = ranker.acceptance_score(rows.X)
    slate = hist & rows.shown & (rows.position >= 0)
    accepted = rows.y >= 1
    cal = fit_slate_logit(
        f[slate], rows.position[slate], show_row[slate], rows.query_ids[slate], kind_rows[slate], accepted[slate]
    )
    ranker.set_calibration(cal)

    # 4. acceptance effect
    p_acc = np.zeros(len(rows))
    p_acc[slate] = cal.probabilities(
        cal.utilities(f[slate], rows.position[slate], show_row[slate]), rows.query_ids[slate], kind_rows[slate]
    )
    in_slate = slate.astype(np.float64)
    o_acc = ie.per_item_counts(item, accepted * in_slate, n_items)
    e_acc = ie.per_item_counts(item, p_acc * in_slate, n_items)
    acc_eff, acc_a = ie.shrunk_log_ratio(o_acc, e_acc, item_kind)
    acc_row = ie.leave_one_out(o_acc, e_acc, acc_a, item, accepted * in_slate, p_acc * in_slate)
    accept_row = cal.show_coef * show_row + acc_row
    col = names.index("item_accept_effect")
    rows = _with_column(rows, col, accept_row)

    # 5. outcome stages on all training-period rows (their item effects leave their own client out)
    ranker.fit_outcomes(rows.X, rows.y, rows.client_ids)

    # 6. outcome effect
    out = ranker.outcomes(rows.X)
    started, completed, employed = rows.y >= 2, rows.y >= 3, rows.y >= 4
    o_out = ie.per_item_counts(
        item, (accepted & started) * 1.0 + (started & completed) + (completed & employed), n_items
    )
    e_out = ie.per_item_counts(
        item, accepted * out["p_start"] + started * out["p_complete"] + completed * out["p_employ"], n_items
    )
    out_eff, out_a = ie.shrunk_log_ratio(o_out, e_out, item_kind)

    effects = ie.ItemEffects(
        opportunity_ids=tuple(str(i) for i in items),
        show=show_eff,
        accept=acc_eff,
        show_coef=cal.show_coef,
        outcome=out_eff,
        history=o_show,
        strengths={
            **ie.strengths_by_kind(show_a, item_kind, "show"),
            **ie.strengths_by_kind(acc_a, item_kind, "accept"),
            **ie.strengths_by_kind(out_a, item_kind, "outcome"),
        },
    )
    data.featurizer.set_item_effects(effects.table())
    new_train = replace(train, X=rows.X[:n_train])
    new_valid = None if valid is None else replace(valid, X=rows.X[n_train:])
    diagnostics: dict[str, Any] = {
        "acceptance.best_iteration": ranker.best_iteration_ or cfg.num_boost_round,
        "calibration.scale": cal.scale,
        "calibration.position_coef": cal.position_coef,
        "calibration.show_coef": cal.show_coef,
        **{f"calibration.none.{k}": v for k, v in zip(KINDS, cal.none, strict=True)},
        "outcome.route_penalty": ranker.diagnostics_.get("route_penalty"),
        "outcome.employ_route_penalty": ranker.diagnostics_.get("employ_route_penalty"),
        **{f"items.{k}": v for k, v in effects.summary().items()},
    }
    validation = _validation_losses(ranker, new_valid)
    logger.info(
        "outcome model: acceptance %s trees, slate scale %.3f, position %.3f, show %.3f; route offsets %s",
        diagnostics["acceptance.best_iteration"],
        cal.scale,
        cal.position_coef,
        cal.show_coef,
        [round(v, 2) for v in ranker.stages_["route_offset"]],
    )
    return OutcomeFit(ranker, effects, replace(data, train=new_train, valid=new_valid), diagnostics, validation)


def _validation_losses(ranker: OutcomeAwareRanker, valid: PairTable | None) -> dict[str, float]:
    """Log-loss of each outcome stage on the held-out clients' rows (the data scientist's check, no truth)."""
    if valid is None or len(valid) == 0:
        return {}
    out = ranker.outcomes(valid.X)
    y = valid.y
    losses: dict[str, float] = {}
    for name, key, lo in (("start", "p_start", 1), ("complete", "p_complete", 2), ("employ", "p_employ", 3)):
        m = y >= lo
        losses[f"valid_logloss_{name}"] = _log_loss(out[key][m], y[m] >= lo + 1)
    return {k: v for k, v in losses.items() if np.isfinite(v)}
