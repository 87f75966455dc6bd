"""Congestion-aware suggestions through the real app (SQLite and PostgreSQL): with and without a price run."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from service.storage.db import make_engine, make_session_factory
from service.storage.prices import ItemPrice, save_price_run
from service.storage.tables import PriceRunRow
from tests.service_fixtures import ApiEnv

CLIENT = "hel-c-000"


def _suggest(api: ApiEnv, **extra: Any) -> dict[str, Any]:
    body = {"client_id": CLIENT, "kinds": ["vacancy"], "k": 5, "lang": "fi", **extra}
    r = api.client.post("/v1/suggestions", json=body, headers=api.auth("counsellor"))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _store_run(api: ApiEnv, prices: dict[str, float]) -> str:
    run_id = uuid.uuid4().hex
    engine = make_engine(api.settings.database_url)
    with make_session_factory(engine)() as session:
        row = PriceRunRow(
            run_id=run_id,
            centre="helsinki",
            reference_date=date(2026, 3, 2),
            model_name="polku-ranker",
            model_version="1",
            solver="highs",
            seconds=1.0,
            population=9,
            n_items=12,
            n_pairs=50,
            total_value=10.0,
        )
        save_price_run(session, row, [ItemPrice(oid, p, 1, 1) for oid, p in prices.items()])
        session.commit()
    engine.dispose()
    return run_id


def _ids(answer: dict[str, Any]) -> list[str]:
    return [i["opportunity_id"] for i in answer["suggestions"][0]["items"]]


def test_prices_reorder_suggestions_say_why_and_name_the_run(api: ApiEnv) -> None:
    plain = _suggest(api)
    assert plain["price_run"] is None
    assert all(i["congestion_price"] is None for i in plain["suggestions"][0]["items"])
    order = _ids(plain)
    assert len(order) >= 2
    top, second = order[0], order[1]
    gap = plain["suggestions"][0]["items"][0]["score"] - plain["suggestions"][0]["items"][1]["score"]

    run_id = _store_run(api, {top: gap + 10.0, second: 0.0})  # the top item is crowded: it must move down
    priced = _suggest(api)
    assert priced["price_run"]["run_id"] == run_id
    assert priced["price_run"]["solver"] == "highs"
    moved = _ids(priced)
    assert moved[0] == second
    assert moved.index(top) > 0
    items = {i["opportunity_id"]: i for i in priced["suggestions"][0]["items"]}
    assert items[top]["congestion_price"] > 0
    assert items[top]["score"] == plain["suggestions"][0]["items"][0]["score"]  # the score itself is unchanged
    up = [r for r in items[second]["reasons"] if r["feature"] == "congestion"]
    assert up
    assert "lähes yhtä hyvä" in up[0]["text"]
    down = [r for r in items[top]["reasons"] if r["feature"] == "congestion"]
    assert down
    assert "paljon hakijoita" in down[0]["text"]

    off = _suggest(api, congestion_aware=False)
    assert off["price_run"] is None
    assert _ids(off) == order
    assert all(r["feature"] != "congestion" for i in off["suggestions"][0]["items"] for r in i["reasons"])


def test_a_new_run_and_a_reload_are_picked_up_without_restart(api: ApiEnv) -> None:
    first = _store_run(api, {})
    assert _suggest(api)["price_run"]["run_id"] == first
    second = _store_run(api, {})
    assert _suggest(api)["price_run"]["run_id"] == second
    r = api.client.post("/v1/admin/model:reload", headers=api.auth("admin", None))
    assert r.status_code == 200, r.text
    answer = _suggest(api)
    assert answer["price_run"]["run_id"] == second
    assert all(r["feature"] != "congestion" for i in answer["suggestions"][0]["items"] for r in i["reasons"])


def test_congestion_flag_must_be_a_boolean(api: ApiEnv) -> None:
    body = {"client_id": CLIENT, "congestion_aware": "maybe"}
    r = api.client.post("/v1/suggestions", json=body, headers=api.auth("counsellor"))
    assert r.status_code == 422
    assert "congestion_aware" in r.text
