"""Off-policy pieces of the closed-loop simulation: the DR reward model, the NDCG check and per-query values.

Split from :mod:`training.simulate`; the truth enters only through the simulation context's ``gains`` and
``idcg`` (grading), never the estimators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.records import KINDS
from models.batch import predict_records
from models.package import PolkuModel
from training import ope
from training.world.population import reference_date

if TYPE_CHECKING:
    from training.simulate import _Context, _Served


def query_numbers(served: _Served) -> npt.NDArray[np.int64]:
    """Query number (0..) of every served row, one query per (client, kind), in row order."""
    key = served.client * len(KINDS) + served.kind
    return np.asarray(np.unique(key, return_inverse=True)[1].reshape(-1), dtype=np.int64)


def oracle_reward_logs(
    ctx: _Context,
    served: _Served,
    logs: ope.LoggedSlates,
    year: int,
    k: int,
    rhat_logged: npt.NDArray[np.float64],
    rhat_target: npt.NDArray[np.float64],
    counter: _Served,
) -> ope.LoggedSlates:
    """The logs of queries with a relevant item, the truth's gains as rewards, each query's ideal DCG as normaliser.

    The DR part maps the outcome reward model linearly onto the gains (least squares over the logged rows).
    """
    keep = np.zeros(served.item.size, dtype=bool)
    reward = np.zeros(served.item.size)
    z = np.zeros(logs.n_queries)
    starts = np.flatnonzero(np.r_[True, logs.query[1:] != logs.query[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], logs.query.size], strict=True):
        g, kind = int(served.client[s]), int(served.kind[s])
        idcg = ctx.idcg(g, ctx.candidates(g, year)[kind], k)
        if idcg > 0:
            keep[s:e] = True
            reward[s:e] = ctx.gains(g, served.item[s:e])
            z[logs.query[s]] = idcg
    kept_queries = np.unique(logs.query[keep])
    query = np.unique(logs.query[keep], return_inverse=True)[1].reshape(-1).astype(np.int64)
    row_z = z[logs.query]
    normalised = np.divide(reward, row_z, out=np.zeros_like(reward), where=row_z > 0)
    slope, intercept = np.polyfit(rhat_logged[keep], normalised[keep], 1) if keep.sum() > 2 else (0.0, 0.0)
    target_query = query_numbers(counter)
    dm_all = np.bincount(
        target_query,
        weights=(intercept + slope * rhat_target) * ope.dcg_weights(counter.position + 1),
        minlength=logs.n_queries,
    )
    return ope.LoggedSlates(
        query=query,
        position=logs.position[keep],
        logging_propensity=logs.logging_propensity[keep],
        target_propensity=logs.target_propensity[keep],
        reward=reward[keep],
        reward_hat=(intercept + slope * rhat_logged[keep]) * row_z[keep],
        normaliser=z[kept_queries],
        target_dm=np.asarray(dm_all[kept_queries] * z[kept_queries], dtype=np.float64),
    )


def reward_model(
    ctx: _Context, target: PolkuModel, served: _Served, counter: _Served, labels: npt.NDArray[np.float64], year: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The DR's reward model, from the target's own outcome estimates and the logs (never the truth).

    ``rhat = p_accept * (1 + expected_outcome) * f_j`` with ``f_j`` the logged mean label at position ``j``
    relative to position 1 (position bias), scaled so that its mean over the logged rows equals the mean label.
    Returns the predictions for the logged rows and for the target's own slates.
    """
    refs = [reference_date(year)] * len(ctx.world.clients)
    client = np.r_[served.client, counter.client]
    item = np.r_[served.item, counter.item]
    pred = predict_records(target, ctx.world.clients, ctx.world.opportunities, client, item, refs)
    base = np.nan_to_num(pred["p_accept"] * (1.0 + pred["expected_outcome"]), nan=1.0)
    by_pos = pd.Series(labels).groupby(served.position).mean()
    first = max(float(by_pos.iloc[0]), 1e-9)
    position = np.r_[served.position, counter.position]
    factor = np.array([float(by_pos.get(j, by_pos.iloc[-1])) / first for j in range(int(position.max()) + 1)])
    rhat = base * factor[position]
    n = served.item.size
    scale = float(labels.sum()) / max(float(rhat[:n].sum()), 1e-9)
    return rhat[:n] * scale, rhat[n:] * scale


def dcg_per_query(values: npt.NDArray[np.float64], served: _Served) -> float:
    """Mean over queries of the DCG of per-row ``values`` (rewards or expected labels) at the served positions."""
    query = query_numbers(served)
    per_q = np.bincount(query, weights=values * ope.dcg_weights(served.position + 1), minlength=int(query.max()) + 1)
    return float(per_q.mean()) if per_q.size else float("nan")
