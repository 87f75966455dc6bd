"""Pair feature pipeline: properties (hypothesis) and the contract other modules rely on."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from features.pairs import FEATURE_NAMES, NO_INTAKE_DAYS, EncodedItems, PairBatch, PairFeaturizer
from features.records import ClientProfile, Opportunity
from tests.factories import REFERENCE_DATE, make_audit, make_client, make_opportunity, make_training
from tests.strategies import catalogues, clients

PROPS = settings(max_examples=25, deadline=None)
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _all_pairs(cs: list[ClientProfile], ops: list[Opportunity]) -> PairBatch:
    ci, oi = np.meshgrid(np.arange(len(cs)), np.arange(len(ops)), indexing="ij")
    return PairBatch(cs, ops, ci.ravel(), oi.ravel())


def _featurizer(**kwargs: object) -> PairFeaturizer:
    return PairFeaturizer(reference_date=REFERENCE_DATE, **kwargs)  # type: ignore[arg-type]


def _with_skill(client: ClientProfile, uri: str, level: int) -> ClientProfile:
    data = client.model_dump()
    data["skills"] = [s for s in data["skills"] if s["uri"] != uri] + [{"uri": uri, "level": level}]
    return ClientProfile.model_validate(data)


# -- properties -------------------------------------------------------------------------------------------------------
@PROPS
@given(cs=st.lists(clients(), min_size=1, max_size=3), ops=catalogues(), data=st.data())
def test_row_order_does_not_change_a_rows_features(
    cs: list[ClientProfile], ops: list[Opportunity], data: st.DataObject
) -> None:
    batch = _all_pairs(cs, ops)
    perm = np.asarray(data.draw(st.permutations(range(len(batch)))), dtype=np.int64)
    shuffled = PairBatch(cs, ops, batch.client_idx[perm], batch.opp_idx[perm])
    fz = _featurizer().fit(batch)
    np.testing.assert_array_equal(fz.transform(shuffled), fz.transform(batch)[perm])


@PROPS
@given(client=clients(), ops=catalogues(), data=st.data())
def test_adding_required_skill_never_lowers_coverage(
    client: ClientProfile, ops: list[Opportunity], data: st.DataObject
) -> None:
    required = sorted({u for o in ops for u in o.required_skills.essential})
    have = {s.uri: s.level for s in client.skills}
    candidates = [u for u in required if u not in have]
    if not candidates:
        return
    uri = data.draw(st.sampled_from(candidates))
    richer = _with_skill(client, uri, data.draw(st.integers(1, 4)))
    fz = _featurizer().fit(_all_pairs([client], ops))
    before = fz.transform(_all_pairs([client], ops))
    after = fz.transform(_all_pairs([richer], ops))
    for name in ("ess_cov", "ess_cov_any"):
        assert np.all(after[:, COL[name]] >= before[:, COL[name]]), name
    assert np.all(after[:, COL["ess_missing"]] <= before[:, COL["ess_missing"]])
    gains = np.array([uri in o.required_skills.essential for o in ops])
    assert np.all(after[gains, COL["ess_cov"]] > before[gains, COL["ess_cov"]])


@PROPS
@given(cs=st.lists(clients(), min_size=1, max_size=3), ops=catalogues())
def test_features_are_finite_float32(cs: list[ClientProfile], ops: list[Opportunity]) -> None:
    X = _featurizer().fit(_all_pairs(cs, ops)).transform(_all_pairs(cs, ops))
    assert X.dtype == np.float32
    assert X.shape == (len(cs) * len(ops), len(FEATURE_NAMES))
    assert np.isfinite(X).all()


@PROPS
@given(cs=st.lists(clients(), min_size=1, max_size=3), ops=catalogues(), data=st.data())
def test_transform_equals_serving_path(cs: list[ClientProfile], ops: list[Opportunity], data: st.DataObject) -> None:
    fz = _featurizer().fit(_all_pairs(cs, ops))
    items = fz.encode_items(ops)
    for client in cs:
        idx = np.asarray(data.draw(st.lists(st.integers(0, len(ops) - 1), max_size=10)), dtype=np.int64)
        batch = PairBatch(cs, ops, np.full(idx.size, cs.index(client)), idx)
        served = fz.transform_encoded(fz.encode_client(client), items, idx)
        np.testing.assert_array_equal(served, fz.transform(batch))


@PROPS
@given(cs=st.lists(clients(), min_size=1, max_size=2), ops=catalogues(), data=st.data())
def test_to_dict_round_trip_gives_identical_features(
    cs: list[ClientProfile], ops: list[Opportunity], data: st.DataObject
) -> None:
    acceptance = {
        o.opportunity_id: (a, a + data.draw(st.integers(0, 50)))
        for o in ops
        for a in [data.draw(st.integers(0, 20))]
        if data.draw(st.booleans())
    }
    batch = _all_pairs(cs, ops)
    fz = _featurizer(prior_strength=7.5).fit(batch, acceptance=acceptance)
    restored = PairFeaturizer.from_dict(json.loads(json.dumps(fz.to_dict())))
    np.testing.assert_array_equal(restored.transform(batch), fz.transform(batch))


# -- audit attributes cannot enter ------------------------------------------------------------------------------------
def test_audit_attributes_raise_type_error() -> None:
    client = make_client()
    audit = make_audit(client.client_id)
    fz = _featurizer()
    with pytest.raises(TypeError, match="AuditAttributes"):
        fz.encode_client(audit)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AuditAttributes"):
        PairBatch([client, audit], [make_opportunity()], np.array([0]), np.array([0]))  # type: ignore[list-item]
    with pytest.raises(TypeError):
        fz.encode_items([audit])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        fz.transform([client])  # type: ignore[arg-type]


# -- contract ---------------------------------------------------------------------------------------------------------
def test_feature_names_match_columns() -> None:
    fz = _featurizer()
    names = fz.get_feature_names_out()
    X = fz.fit_transform(_all_pairs([make_client()], [make_opportunity(), make_training()]))
    assert len(names) == X.shape[1] == len(FEATURE_NAMES)
    assert len(set(names)) == len(names)
    for name in ("ess_cov", "opt_cov", "occ_prior_isco4", "lang_gap_fi", "dist_km", "hist_accept_rate"):
        assert name in names
    assert "kind_vacancy" in names
    assert "route_language" in names


def test_empty_batch_gives_empty_matrix() -> None:
    fz = _featurizer()
    X = fz.transform(PairBatch([make_client()], [make_opportunity()], np.array([], int), np.array([], int)))
    assert X.shape == (0, len(FEATURE_NAMES))


def test_batch_rejects_out_of_range_indices() -> None:
    with pytest.raises(ValueError, match="opp_idx"):
        PairBatch([make_client()], [make_opportunity()], np.array([0]), np.array([1]))


def test_sklearn_clone_keeps_parameters() -> None:
    fz = _featurizer(prior_strength=5.0)
    copy = clone(fz)
    assert copy.get_params()["prior_strength"] == 5.0
    assert copy.reference_date == REFERENCE_DATE


def test_from_dict_rejects_other_feature_names() -> None:
    d = _featurizer().fit(_all_pairs([make_client()], [make_opportunity()])).to_dict()
    d["feature_names"] = d["feature_names"][:-1]
    with pytest.raises(ValueError, match="feature_names"):
        PairFeaturizer.from_dict(d)


# -- feature semantics ------------------------------------------------------------------------------------------------
def test_acceptance_is_smoothed_and_unseen_items_get_the_prior() -> None:
    seen, unseen = make_opportunity(), make_opportunity()
    other = make_opportunity()
    acceptance = {seen.opportunity_id: (9, 10), other.opportunity_id: (1, 30)}
    fz = _featurizer(prior_strength=10.0).fit(_all_pairs([make_client()], [seen]), acceptance=acceptance)
    X = fz.transform(_all_pairs([make_client()], [seen, unseen]))
    prior = 10 / 40
    assert fz.prior_rate_ == pytest.approx(prior)
    assert X[0, COL["hist_accept_rate"]] == pytest.approx((9 + 10 * prior) / 20)
    assert X[1, COL["hist_accept_rate"]] == pytest.approx(prior)


def test_days_to_next_intake_and_continuous_admission() -> None:
    fixed = make_training(intake={"continuous": False, "dates": [date(2025, 8, 1), date(2025, 9, 15)]})
    past = make_training(intake={"continuous": False, "dates": [date(2025, 1, 1)]})
    cont = make_opportunity(intake={"continuous": True})
    X = _featurizer().transform(_all_pairs([make_client()], [fixed, past, cont]))
    assert X[:, COL["days_to_start"]].tolist() == [14.0, NO_INTAKE_DAYS, 0.0]
    assert X[:, COL["no_intake"]].tolist() == [0.0, 1.0, 0.0]
    later = PairFeaturizer().transform_encoded(
        PairFeaturizer().encode_client(make_client()),
        PairFeaturizer().encode_items([fixed]),
        np.array([0]),
        reference_date=date(2025, 7, 1),
    )
    assert later[0, COL["days_to_start"]] == 31.0


def test_language_gap_in_steps_with_s2_offset() -> None:
    client = make_client(languages=[{"language": "fi", "level": "A1.2"}])  # ordinal 2
    plain = make_opportunity(min_language={"fi": "B1.1"})  # ordinal 6
    s2 = make_opportunity(min_language={"fi": "B1.1"}, s2_support=True)
    either = make_opportunity(min_language={"fi": "B1.1", "en": "A1.1"})
    X = _featurizer().transform(_all_pairs([client], [plain, s2, either]))
    assert X[:, COL["lang_gap_fi"]].tolist() == [4.0, 2.0, 4.0]
    assert X[:, COL["lang_gap_en"]].tolist() == [0.0, 0.0, 1.0]
    assert X[:, COL["lang_gap_best"]].tolist() == [4.0, 2.0, 1.0]


def test_occupation_match_depth_and_years() -> None:
    item = make_opportunity()  # cook, ISCO 5120
    goal_51 = make_client(goals={"target_occupations": [{"isco": "51"}]}, prior_occupations=[])
    veteran = make_client(prior_occupations=[{"occupation": {"isco": "5120"}, "years": 20.0}])
    novice = make_client(prior_occupations=[{"occupation": {"isco": "5120"}, "years": 0.0}])
    X = _featurizer().transform(_all_pairs([goal_51, veteran, novice], [item]))
    goal = [COL[f"occ_goal_isco{d}"] for d in (1, 2, 3, 4)]
    assert X[0, goal].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert X[0, COL["occ_prior_isco1"]] == 0.0
    assert X[1, COL["occ_prior_isco4"]] > X[2, COL["occ_prior_isco4"]] > 0.0


def test_distance_and_ratio() -> None:
    client = make_client(constraints={"municipality": "091", "max_travel_km": 50.0})
    X = _featurizer().transform(_all_pairs([client], [make_opportunity(municipality="837")]))
    assert 150 < X[0, COL["dist_km"]] < 260
    assert X[0, COL["dist_ratio"]] == pytest.approx(X[0, COL["dist_km"]] / 50.0)


def test_first_stage_returns_best_k_of_candidates() -> None:
    client = make_client()
    good = make_opportunity()
    bad = make_opportunity(occupation=None, required_skills={"essential": [], "optional": []}, sector="general")
    ops = [bad, good, bad.model_copy(update={"opportunity_id": "opp-other-bad"})]
    fz = _featurizer()
    items = fz.encode_items(ops)
    assert isinstance(items, EncodedItems)
    assert fz.encode_items(ops) is items  # cached per catalogue
    top = fz.first_stage(fz.encode_client(client), items, np.array([0, 1, 2]), k=2)
    assert top.tolist()[0] == 1
    assert len(top) == 2
    assert fz.first_stage(fz.encode_client(client), items, np.array([], int), k=3).size == 0


@PROPS
@given(cs=st.lists(clients(), min_size=1, max_size=6), ops=catalogues(), data=st.data())
def test_many_clients_against_one_item_equal_the_per_pair_rows(
    cs: list[ClientProfile], ops: list[Opportunity], data: st.DataObject
) -> None:
    fz = _featurizer().fit(_all_pairs(cs, ops))
    items = fz.encode_items(ops)
    batch = fz.encode_clients(cs)
    item = data.draw(st.integers(0, len(ops) - 1))
    rows = np.asarray(data.draw(st.lists(st.integers(0, len(cs) - 1), max_size=8)), dtype=np.int64)
    got = fz.transform_many_clients(batch, items, item, rows=rows)
    want = [fz.transform_encoded(fz.encode_client(cs[int(r)]), items, np.array([item]))[0] for r in rows]
    np.testing.assert_allclose(got, np.array(want).reshape(got.shape), rtol=1e-6, atol=1e-6)
    everyone = fz.transform_many_clients(batch, items, item)
    assert everyone.shape == (len(cs), len(FEATURE_NAMES))


@PROPS
@given(cs=st.lists(clients(), min_size=2, max_size=5), ops=catalogues(min_size=2), data=st.data())
def test_first_stage_scores_agree_whichever_route_computes_them(
    cs: list[ClientProfile], ops: list[Opportunity], data: st.DataObject
) -> None:
    """One client on a few items (gathered rows), on most items (whole matrices) and many clients: one score."""
    from features.pairs.retrieval import first_stage_scores

    fz = _featurizer()
    items = fz.encode_items(ops)
    batch = fz.encode_clients(cs)
    positions = data.draw(st.lists(st.integers(0, len(ops) - 1), min_size=1, max_size=len(ops), unique=True))
    idx = np.asarray(positions, dtype=np.int64)
    together = first_stage_scores(batch, np.arange(len(cs), dtype=np.int64), items, idx)
    for r in range(len(cs)):
        alone = first_stage_scores(batch, np.array([r], dtype=np.int64), items, idx)[0]
        np.testing.assert_allclose(alone, together[r], rtol=1e-6, atol=1e-6)
        one = first_stage_scores(batch, np.array([r], dtype=np.int64), items, idx[:1])[0]  # the gathered route
        np.testing.assert_allclose(one, together[r, :1], rtol=1e-6, atol=1e-6)


def test_rows_dot_equals_the_sliced_sparse_product() -> None:
    import scipy.sparse as sp

    from features.pairs.retrieval import rows_dot

    rng = np.random.default_rng(3)
    items = sp.random(40, 30, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    items[5] = 0.0  # an item without skills
    items.eliminate_zeros()
    dense = rng.random(30).astype(np.float32)
    idx = np.array([5, 0, 39, 7, 7, 12], dtype=np.int64)
    want = np.asarray(items[idx] @ dense, dtype=np.float32)
    np.testing.assert_allclose(rows_dot(items, idx, dense), want, rtol=1e-6)  # summation order may differ
    assert rows_dot(items, np.zeros(0, dtype=np.int64), dense).shape == (0,)
