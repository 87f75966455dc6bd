"""``polku allocate`` on a LocalCluster: batch scores equal serving's, prices and run metadata reach the store."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from features.eligibility import EligibilityEvaluator
from features.records import KINDS
from models.batch import ModelSource, allocation_problem, dask_client, kind_index, prune_top_k, score_clients
from models.package import PolkuModel
from models.packaging import save_local
from service.allocate import AllocateOptions, run_allocation, score_on_dask
from service.storage import repositories as repo
from service.storage.db import make_engine, make_session_factory, migrate
from service.storage.prices import latest_price_run, prices_version
from service.storage.tables import ItemPriceRow, PriceRunRow
from tests.service_fixtures import make_settings, tiny_catalogue, tiny_clients

ON = date(2026, 3, 2)


def test_batch_scores_are_the_scores_serving_sorts(small_model: PolkuModel) -> None:
    clients, items = tiny_clients()[:4], tiny_catalogue()
    pairs = score_clients(small_model, clients, items, ON)
    enc_items = small_model.encode_items(items)
    evaluator = EligibilityEvaluator(items)
    kind_of = np.array([KINDS.index(o.kind) for o in items])
    for row, client in enumerate(clients):
        eligible = evaluator.evaluate(client, ON).eligible_indices
        groups = [eligible[kind_of[eligible] == k] for k in range(len(KINDS))]
        served = small_model.rank_groups(client, enc_items, groups, k=50, reference_date=ON)
        expected = {int(i): float(s) for r in served for i, s in zip(r.indices, r.scores, strict=True)}
        mine = pairs.row == row
        got = dict(zip(pairs.item[mine].tolist(), pairs.score[mine].tolist(), strict=True))
        assert got.keys() == expected.keys()
        assert all(got[i] == pytest.approx(expected[i]) for i in got)


def test_one_agent_per_client_and_kind_with_next_intake_seats(small_model: PolkuModel) -> None:
    clients, items = tiny_clients()[:3], tiny_catalogue()
    problem = allocation_problem(score_clients(small_model, clients, items, ON), len(clients), items, ON)
    assert problem.n_agents == 3 * len(KINDS)
    full = [o.opportunity_id for o in items].index("hel-full-001")
    assert problem.capacity[full] == 0


def _tiny_store(db_url: str, model: PolkuModel, tmp_path: Path) -> tuple[Any, Any, Path]:
    """Settings and an engine on a migrated store holding the tiny catalogue and clients, and a model bundle."""
    settings = make_settings(db_url, tmp_path / "data")
    engine = make_engine(db_url)
    migrate(engine)
    with make_session_factory(engine)() as session:
        repo.upsert_opportunities(session, tiny_catalogue())
        repo.upsert_clients(session, tiny_clients())
        session.commit()
    return settings, engine, save_local(model, tmp_path / "bundle")


def test_allocate_writes_prices_and_run_metadata(db_url: str, small_model: PolkuModel, tmp_path: Path) -> None:
    settings, engine, bundle = _tiny_store(db_url, small_model, tmp_path)
    options = AllocateOptions(centres=("helsinki",), on=ON, workers=1, bundle=bundle, block_clients=4, log_mlflow=False)
    (run,) = run_allocation(settings, options)
    helsinki = [o for o in tiny_catalogue() if o.centre == "helsinki"]
    matching = [c for c in tiny_clients() if c.centre == "helsinki" and c.consent.matching]
    assert (run.centre, run.n_clients, run.n_items) == ("helsinki", len(matching), len(helsinki))
    assert run.n_pairs > 0
    with make_session_factory(engine)() as session:
        stored = latest_price_run(session, "helsinki")
        assert stored is not None
        assert stored.run_id == run.run_id
        assert (stored.solver, stored.model_version, stored.reference_date) == ("highs", "test", ON)
        assert set(stored.prices) == {o.opportunity_id for o in helsinki}
        assert all(p >= 0 for p in stored.prices.values())
        rows = session.scalars(select(ItemPriceRow).where(ItemPriceRow.run_id == run.run_id)).all()
        assert all(r.allocated <= r.capacity for r in rows)
        assert all(r.price == 0 for r in rows if r.allocated < r.capacity)  # seats left: never priced
        assert prices_version(session, "helsinki")[0] == 1
        assert latest_price_run(session, "espoo") is None
        columns = set(PriceRunRow.__table__.columns.keys()) | set(ItemPriceRow.__table__.columns.keys())
        assert not any("client_id" in c for c in columns)  # no per-client data is stored
    engine.dispose()


def test_blocks_pruned_on_the_workers_one_at_a_time_are_each_lists_top_k_of_the_full_scores(
    small_model: PolkuModel, tmp_path: Path
) -> None:
    clients, items = tiny_clients(), tiny_catalogue()
    bundle = ModelSource(str(save_local(small_model, tmp_path / "bundle")))
    with dask_client(None, 1, processes=False) as client:
        pruned = score_on_dask(client, bundle, clients, items, "tiny", ON, block_clients=3, top_k=2, window=1)
        full = score_on_dask(client, bundle, clients, items, "tiny", ON, block_clients=3)
    expected = prune_top_k(full, kind_index(items), 2)
    assert pruned.row.size < full.row.size
    assert pruned.row.tolist() == expected.row.tolist()
    assert pruned.item.tolist() == expected.item.tolist()
    assert pruned.score == pytest.approx(expected.score)


def test_every_centre_with_clients_and_items_gets_its_own_run_in_order(
    db_url: str, small_model: PolkuModel, tmp_path: Path
) -> None:
    settings, engine, bundle = _tiny_store(db_url, small_model, tmp_path)
    options = AllocateOptions(
        centres=("espoo", "turku", "helsinki"), on=ON, workers=1, bundle=bundle, block_clients=4, log_mlflow=False
    )
    runs = run_allocation(settings, options)
    assert [(r.centre, r.n_items) for r in runs] == [("espoo", 1), ("helsinki", 12)]  # turku has nobody
    with make_session_factory(engine)() as session:
        assert {c: latest_price_run(session, c) is not None for c in ("espoo", "turku", "helsinki")} == {
            "espoo": True,
            "turku": False,
            "helsinki": True,
        }
    engine.dispose()


def test_allocate_command_refuses_bad_options_naming_them() -> None:
    from polku import app

    runner = CliRunner()
    for args, name in [
        (["allocate", "--centre", "atlantis"], "--centre"),
        (["allocate", "--solver", "simplex"], "--solver"),
        (["allocate", "--date", "yesterday"], "--date"),
        (["allocate", "--top-k", "-1"], "--top-k"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert name in result.output


def test_allocation_run_is_logged_to_mlflow_without_client_data(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from models.batch import ModelSource
    from service.allocate import EXPERIMENT, CentreAllocation, _log_mlflow, _Model

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = make_settings("sqlite:///unused.db", tmp_path / "data", mlflow_tracking_uri=tracking)
    summary = CentreAllocation("r1", "helsinki", 9, 12, 50, 3, 7, 10.5, 1.0, 0.1, 1.2)
    options = AllocateOptions(centres=("helsinki",), on=ON)
    import mlflow

    previous = mlflow.get_tracking_uri()
    try:
        run_id = _log_mlflow(settings, _Model(ModelSource("bundle"), "polku-ranker", "3"), options, summary)
    finally:
        mlflow.set_tracking_uri(previous)
    assert run_id is not None
    run = MlflowClient(tracking_uri=tracking).get_run(run_id)
    assert run.data.metrics["allocation/total_value"] == pytest.approx(10.5)
    assert run.data.params["solver"] == "highs"
    assert run.data.params["model_version"] == "3"
    assert run.data.tags["polku.price_run"] == "r1"
    logged = " ".join([*run.data.params.values(), *run.data.params, *run.data.metrics])
    assert "hel-c-" not in logged
    assert MlflowClient(tracking_uri=tracking).get_experiment_by_name(EXPERIMENT) is not None
