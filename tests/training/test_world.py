"""Synthetic world: determinism, valid records, round-trip, calibration, history, truth properties."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.records import ROUTES, AuditAttributes, ClientProfile, Opportunity
from training.world import Truth, World, calibration_report, generate_world
from training.world.history import HISTORY_COLUMNS


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(n_clients=600, seed=3)


def test_same_seed_gives_identical_world(world: World) -> None:
    again = generate_world(n_clients=600, seed=3)
    assert again.clients == world.clients
    assert again.audit == world.audit
    assert again.opportunities == world.opportunities
    pd.testing.assert_frame_equal(again.history, world.history)
    other = generate_world(n_clients=600, seed=4)
    assert other.clients != world.clients


def test_records_are_valid_and_aligned(world: World) -> None:
    assert len(world.clients) == len(world.audit) == len(world.cohort_of) == 600
    assert all(isinstance(c, ClientProfile) for c in world.clients)
    assert all(isinstance(a, AuditAttributes) for a in world.audit)
    assert [c.client_id for c in world.clients] == [a.client_id for a in world.audit]
    for c in world.clients[:50]:
        assert ClientProfile.model_validate_json(c.model_dump_json()) == c
    for o in world.opportunities:
        assert Opportunity.model_validate_json(o.model_dump_json()) == o
    assert set(world.cohort_of.values()) == {2023, 2024, 2025}


def test_catalogue_covers_every_kind_and_route_in_every_centre(world: World) -> None:
    assert len(world.opportunities) == 100
    for centre in {o.centre for o in world.opportunities}:
        items = [o for o in world.opportunities if o.centre == centre]
        assert {o.kind for o in items} == {"training", "work_trial", "vacancy"}
        assert {o.route for o in items if o.route} == set(ROUTES)
    language = [o for o in world.opportunities if o.route == "language"]
    assert language
    assert all(o.completion.language_reached.get("fi") for o in language)
    degrees = [o for o in world.opportunities if o.route == "degree"]
    assert degrees
    assert all(o.completion.qualification and o.completion.skills_gained for o in degrees)


def test_save_load_round_trips_exactly(world: World, tmp_path: Path) -> None:
    world.save(tmp_path / "w")
    loaded = World.load(tmp_path / "w")
    assert loaded.clients == world.clients
    assert loaded.audit == world.audit
    assert loaded.opportunities == world.opportunities
    assert loaded.cohort_of == world.cohort_of
    assert loaded.manifest == world.manifest
    pd.testing.assert_frame_equal(loaded.history, world.history)
    cids = [c.client_id for c in world.clients[:40] for _ in range(5)]
    oids = [o.opportunity_id for _ in range(40) for o in world.opportunities[:5]]
    np.testing.assert_array_equal(loaded.truth.expected_utility(cids, oids), world.truth.expected_utility(cids, oids))


def test_manifest_holds_seed_sizes_taxonomy_and_calibration(world: World) -> None:
    m = world.manifest
    assert m["seed"] == 3
    assert m["sizes"]["clients"] == 600
    assert m["taxonomy_version"]
    assert "checks" in m["calibration"]


def test_marginals_and_base_rates_are_within_tolerance(world: World) -> None:
    report = calibration_report(world)
    failed = {k: v for k, v in report["checks"].items() if not v["ok"]}
    assert not failed, failed
    assert report["checks"]["gender/male"]["realised"] == pytest.approx(0.75, abs=0.01)
    assert report["checks"]["mother_tongue/ar"]["realised"] == pytest.approx(0.42, abs=0.01)


def test_history_has_contract_columns_and_consistent_funnel(world: World) -> None:
    h = world.history
    assert tuple(h.columns) == HISTORY_COLUMNS
    assert h["position"].min() == 0
    assert h["position"].max() <= 7
    assert (h.groupby("slate_id").size() <= 8).all()
    assert (h["started"] <= h["accepted"]).all()
    assert (h["completed"] <= h["started"]).all()
    assert (h["employed_6m"] <= h["completed"]).all()
    assert (h.groupby("slate_id")["accepted"].sum() <= 1).all()
    assert h["outcome_score"].dtype == np.float64
    assert set(h["kind"]) == {"training", "work_trial", "vacancy"}
    assert (h["cohort"] == h["client_id"].map(world.cohort_of)).all()


def test_historical_policy_shows_women_fewer_jobs(world: World) -> None:
    gender = {a.client_id: a.gender for a in world.audit}
    h = world.history.assign(gender=world.history["client_id"].map(gender))
    jobs = h["kind"] != "training"
    share = h.assign(job=jobs).groupby("gender")["job"].mean()
    assert share["female"] < share["male"]


def test_truth_does_not_depend_on_audit_attributes(world: World) -> None:
    params = inspect.signature(Truth).parameters
    assert not any("audit" in name for name in params)
    cids = [c.client_id for c in world.clients[:30] for _ in range(4)]
    oids = [o.opportunity_id for _ in range(30) for o in world.opportunities[10:14]]
    before = world.truth.expected_utility(cids, oids)
    # Same observable profiles, audit attributes shuffled and rewritten: the truth is unchanged.
    changed = [dataclasses.replace(world, audit=list(reversed(world.audit)))]
    rebuilt = Truth(changed[0].clients, world.opportunities, world.cohort_of, seed=3)
    np.testing.assert_array_equal(rebuilt.expected_utility(cids, oids), before)


def test_truth_utility_rises_with_skill_coverage(world: World) -> None:
    client = world.clients[0]
    vac = next(o for o in world.opportunities if o.kind == "vacancy" and o.centre == client.centre)
    data = client.model_dump(mode="json")
    have = {s["uri"] for s in data["skills"]}
    data["skills"] += [
        {"uri": u, "level": 3, "evidence": "demonstrated"} for u in vac.required_skills.essential if u not in have
    ]
    better = ClientProfile.model_validate_json(json.dumps(data))
    cohort = {client.client_id: 2024}
    base = Truth([client], [vac], cohort, seed=1).expected_utility([client.client_id], [vac.opportunity_id])[0]
    improved = Truth([better], [vac], cohort, seed=1).expected_utility([client.client_id], [vac.opportunity_id])[0]
    assert improved > base


def test_relevance_is_graded_0_to_4_and_monotone_in_utility(world: World) -> None:
    cids = [c.client_id for c in world.clients for _ in range(3)]
    oids = [world.opportunities[k % len(world.opportunities)].opportunity_id for k in range(len(cids))]
    rel = world.truth.relevance(cids, oids)
    util = world.truth.expected_utility(cids, oids)
    assert rel.min() >= 0
    assert rel.max() <= 4
    assert len(np.unique(rel)) >= 3
    order = np.argsort(util)
    assert (np.diff(rel[order]) >= 0).all()


def test_truth_rejects_unknown_ids_and_misaligned_pairs(world: World) -> None:
    with pytest.raises(KeyError, match="nope"):
        world.truth.expected_utility(["nope"], [world.opportunities[0].opportunity_id])
    with pytest.raises(ValueError, match="align"):
        world.truth.expected_utility([world.clients[0].client_id], [])


def test_small_world_generates_quickly() -> None:
    import time

    t0 = time.perf_counter()
    generate_world(n_clients=300, seed=11)
    assert time.perf_counter() - t0 < 5.0


# --- scale work: determinism of saved files, calibration at the default size, fast paths = reference paths ----


@pytest.fixture(scope="module")
def default_world() -> World:
    return generate_world()  # 3000 clients, seed 7: the world `make run` builds


def _saved_bytes(world: World, directory: Path) -> dict[str, bytes]:
    world.save(directory)
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_gives_byte_identical_files(world: World, tmp_path: Path) -> None:
    first = _saved_bytes(world, tmp_path / "a")
    second = _saved_bytes(generate_world(n_clients=600, seed=3), tmp_path / "b")
    assert first.keys() == second.keys() >= {"clients.parquet", "opportunities.parquet", "history.parquet"}
    for name in first:
        assert first[name] == second[name], name


def test_default_world_content_is_unchanged(default_world: World) -> None:
    # Golden digest of the default world's history (it depends on every upstream stage: population, catalogue,
    # truth, slates, decisions). Update it only when the world is meant to change, and say so in the note.
    h = default_world.history
    digest = int(pd.util.hash_pandas_object(h, index=False).sum())
    assert (len(h), digest) == DEFAULT_HISTORY_DIGEST


DEFAULT_HISTORY_DIGEST = (54624, 5555837558434950077)


def test_default_world_marginals_within_3_points_and_base_rates_within_5(default_world: World) -> None:
    checks = calibration_report(default_world)["checks"]
    shares = {k: v for k, v in checks.items() if not k.startswith(("outcome/", "age/"))}
    assert len(shares) >= 20
    for name, c in shares.items():
        assert abs(c["realised"] - c["target"]) <= 0.03, (name, c)
    for name in ("into_training", "into_work_trial_apprenticeship_or_work", "into_work"):
        c = checks[f"outcome/{name}"]
        assert abs(c["realised"] - c["target"]) <= 0.05, (name, c)
    assert calibration_report(default_world)["all_ok"]


def test_fast_draws_match_numpy_choice() -> None:
    from training.world.draws import Draws, cumulative

    a, b = np.random.default_rng(11), np.random.default_rng(11)
    draw = Draws(b)
    for n in (1, 2, 3, 7, 40, 300):
        p = np.arange(1.0, n + 1) ** 1.5
        p = p / p.sum()
        cdf = cumulative(p)
        seq = [f"x{j}" for j in range(n)]
        for _ in range(30):
            assert a.choice(n, p=p) == draw.weighted(cdf)
            assert a.choice(seq) == seq[draw.index(n)]
            for k in range(min(n, 4)):
                assert list(a.choice(seq, k, replace=False)) == [seq[j] for j in draw.sample(n, k)]
            k = min(n, 3)
            assert list(a.choice(n, k, replace=False, p=p)) == draw.weighted_sample(p, cdf, k)
    skewed = np.array([0.97, 0.01, 0.01, 0.01])  # forces repeated rounds without replacement
    for _ in range(50):
        assert list(a.choice(4, 3, replace=False, p=skewed)) == draw.weighted_sample(skewed, cumulative(skewed), 3)
    assert a.random() == b.random()


def test_block_eligibility_of_many_clients_matches_one_client_at_a_time(world: World) -> None:
    from features.eligibility import ClientTable, EligibilityEvaluator
    from training.world.population import reference_date

    ev = EligibilityEvaluator(world.opportunities)
    table = ClientTable.build(world.clients)
    on = np.array([reference_date(world.cohort_of[c.client_id]).toordinal() for c in world.clients])
    n_checked = 0
    for centre in ev.centres:
        rows = np.array([k for k, c in enumerate(world.clients) if c.centre == centre], dtype=np.int64)
        items = ev.items_of_centre(centre)
        if len(rows) == 0:
            continue
        block = ev.reason_codes(table, items, on[rows], rows=rows)  # what the history simulation uses
        for r, k in enumerate(rows):
            client = world.clients[int(k)]
            expected = ev.evaluate(client, reference_date(world.cohort_of[client.client_id])).reason_codes[items]
            np.testing.assert_array_equal(block[r], expected, err_msg=client.client_id)
            n_checked += 1
    assert n_checked == len(world.clients)


def test_slate_selection_matches_a_stable_sort() -> None:
    from training.world.history import _select_slates

    rng = np.random.default_rng(5)
    c = np.sort(rng.integers(0, 200, 5000))
    kind = rng.integers(0, 3, 5000)
    score = np.round(rng.normal(size=5000), 1)  # many ties
    order = np.lexsort((-score, kind, c))
    key = (c * 3 + kind)[order]
    first = np.r_[True, key[1:] != key[:-1]]
    pos = np.arange(len(key)) - np.flatnonzero(first)[np.cumsum(first) - 1]
    np.testing.assert_array_equal(_select_slates(c, kind, score, 8), order[pos < 8])


def test_large_catalogue_splits_into_portfolios_and_keeps_slates_valid() -> None:
    from training.world.history import PORTFOLIO_SIZE

    w = generate_world(n_clients=400, seed=5, n_opportunities=2000)
    helsinki = [o for o in w.opportunities if o.centre == "helsinki"]
    assert len(helsinki) > PORTFOLIO_SIZE
    centre_of = {o.opportunity_id: o.centre for o in w.opportunities}
    client_centre = {c.client_id: c.centre for c in w.clients}
    h = w.history
    assert (h["opportunity_id"].map(centre_of) == h["client_id"].map(client_centre)).all()
    assert (h.groupby("slate_id").size() <= 8).all()
    shown = h[h["client_id"].map(client_centre) == "helsinki"].groupby("client_id")["opportunity_id"].nunique()
    assert shown.max() <= PORTFOLIO_SIZE
    again = generate_world(n_clients=400, seed=5, n_opportunities=2000)
    pd.testing.assert_frame_equal(again.history, h)


def test_progress_bars_stay_silent_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from training.world.progress import enabled, progress

    assert not enabled(10**6)  # pytest captures stderr: not a TTY
    assert list(progress(iter(range(5)), total=5, desc="x")) == [0, 1, 2, 3, 4]
    generate_world(n_clients=120, seed=2)
    assert capsys.readouterr().err == ""


def test_cli_world_accepts_an_opportunity_count(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(
        app, ["world", "--clients", "150", "--opportunities", "75", "--seed", "4", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sizes"]["clients"] == 150
    assert manifest["sizes"]["opportunities"] == 75
