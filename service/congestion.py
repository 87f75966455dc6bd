"""Congestion prices in serving: the centre's latest ``polku allocate`` run, aligned with the snapshot's catalogue.

The prices of a centre are kept on the loaded model (:meth:`service.model_holder.LoadedModel.cached`), keyed by
centre, and are valid while the centre's price counter (one primary-key read per request) and the catalogue are
unchanged. A new run bumps the counter, so the next request reads it; ``POST /v1/admin/model:reload`` builds a
new loaded model, whose cache starts empty. Items the run does not know (added since) have price 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from service.model_holder import Catalogue, Snapshot
from service.schemas import PriceRunInfo
from service.storage.prices import latest_price_run, prices_version


@dataclass(frozen=True, eq=False)
class CentrePrices:
    """One centre's prices by catalogue position, and the run they come from (None: no run for the centre)."""

    version: tuple[int, str]
    catalogue: Catalogue
    run: PriceRunInfo | None
    prices: npt.NDArray[np.float64] | None


def centre_prices(session: Session, snapshot: Snapshot, centre: str) -> CentrePrices:
    """The prices that apply to a centre's suggestions with this snapshot (cached; read again after a new run)."""
    version = prices_version(session, centre)
    catalogue = snapshot.catalogue

    def build() -> CentrePrices:
        if version == (0, ""):
            return CentrePrices(version, catalogue, None, None)
        run = latest_price_run(session, centre)
        if run is None:
            return CentrePrices(version, catalogue, None, None)
        prices = np.zeros(len(catalogue.opportunities), dtype=np.float64)
        for opportunity_id, price in run.prices.items():
            pos = catalogue.position.get(opportunity_id)
            if pos is not None:
                prices[pos] = price
        info = PriceRunInfo(
            run_id=run.run_id,
            reference_date=run.reference_date,
            created_at=run.created_at,
            solver=run.solver,
            model_version=run.model_version,
        )
        return CentrePrices(version, catalogue, info, prices)

    return snapshot.loaded.cached(
        ("congestion_prices", centre), build, valid=lambda p: p.version == version and p.catalogue is catalogue
    )
