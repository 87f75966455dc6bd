"""Repository functions for congestion price runs (``polku allocate`` writes them, suggestions read them).

Kept beside ``repositories.py`` (which holds the other tables' functions and is at the module size limit); the
same rules apply: SQL only here, no commits (the caller owns the transaction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from features.records import ClientProfile
from service.storage.repositories import bump_versions, store_version
from service.storage.tables import ClientRow, ItemPriceRow, PriceRunRow


def prices_version_name(centre: str) -> str:
    """Name of the change counter bumped by each price run of one centre."""
    return f"prices:{centre}"


@dataclass(frozen=True)
class PriceRun:
    """A price run's metadata and its prices by opportunity id (all items of the run, most at 0)."""

    run_id: str
    centre: str
    reference_date: date
    created_at: datetime
    model_name: str
    model_version: str | None
    solver: str
    seconds: float
    population: int
    n_items: int
    n_pairs: int
    total_value: float
    prices: Mapping[str, float]


@dataclass(frozen=True)
class ItemPrice:
    """One item's result in a run."""

    opportunity_id: str
    price: float
    capacity: int
    allocated: int


def matching_clients(session: Session, centre: str) -> list[ClientProfile]:
    """Clients of ``centre`` who consented to matching (the allocation's population), in id order."""
    rows = session.scalars(
        select(ClientRow.profile)
        .where(ClientRow.centre == centre, ClientRow.consent_matching.is_(True))
        .order_by(ClientRow.client_id)
    ).all()
    return [ClientProfile.model_validate(p, strict=False) for p in rows]


def save_price_run(session: Session, run: PriceRunRow, items: Sequence[ItemPrice]) -> None:
    """Add a run and its item prices, and bump the centre's price counter (services pick the run up)."""
    session.add(run)
    session.flush()
    session.add_all(
        ItemPriceRow(
            run_id=run.run_id,
            opportunity_id=i.opportunity_id,
            price=float(i.price),
            capacity=int(i.capacity),
            allocated=int(i.allocated),
        )
        for i in items
    )
    bump_versions(session, [prices_version_name(run.centre)])


def prices_version(session: Session, centre: str) -> tuple[int, str]:
    """(version, time of change) of a centre's price runs; ``(0, "")`` before the first run."""
    return store_version(session, prices_version_name(centre)) or (0, "")


def latest_price_run(session: Session, centre: str) -> PriceRun | None:
    """The newest price run of a centre with its prices, or None."""
    row = session.scalars(
        select(PriceRunRow)
        .where(PriceRunRow.centre == centre)
        .order_by(PriceRunRow.created_at.desc(), PriceRunRow.run_id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    found = session.execute(
        select(ItemPriceRow.opportunity_id, ItemPriceRow.price).where(ItemPriceRow.run_id == row.run_id)
    ).all()
    prices = {str(oid): float(price) for oid, price in found}
    return PriceRun(
        run_id=row.run_id,
        centre=row.centre,
        reference_date=row.reference_date,
        created_at=row.created_at,
        model_name=row.model_name,
        model_version=row.model_version,
        solver=row.solver,
        seconds=row.seconds,
        population=row.population,
        n_items=row.n_items,
        n_pairs=row.n_pairs,
        total_value=row.total_value,
        prices=prices,
    )
