"""Section 2: model time per 1,000 candidates, the packaged ranker against LightGBM's own single-thread predict."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.data import Fixtures
from benchmarks.report import Section, SkipSection

TARGET_RATIO = 2.0


def _median_s(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(section: Section, fx: Fixtures) -> None:
    """Time ``ranker.score`` vs ``Booster.predict(X, num_threads=1)`` on the same rows."""
    model = fx.model
    # The outcome-aware ranker's trees are its acceptance model; the rest of its score is a few array operations.
    inner = getattr(model.ranker, "acceptance_", None) or model.ranker
    booster = getattr(inner, "booster_", None)
    acc_cols = getattr(model.ranker, "acceptance_columns_", None)
    if booster is None:
        raise SkipSection(f"served ranker {model.ranker.name!r} has no LightGBM booster")
    n_items = max(fx.sizes.catalogues)
    catalogue = fx.catalogue(n_items)
    items = model.encode_items(catalogue)
    ref = fx.reference_date()
    client = fx.query_clients(1)[0]
    enc = model.encode_client(client)
    n = min(fx.sizes.model_candidates, len(catalogue))
    idx = np.random.default_rng(5).choice(len(catalogue), size=n, replace=False)
    X = model.featurizer.transform_encoded(enc, items, idx, ref)
    X_trees = X if acc_cols is None else np.ascontiguousarray(X[:, acc_cols])
    num_iteration = getattr(inner, "best_iteration_", None)
    reps = fx.sizes.model_repeats

    t_score = _median_s(lambda: model.ranker.score(X), reps)
    t_lgb = _median_s(lambda: booster.predict(X_trees, num_iteration=num_iteration, num_threads=1), reps)
    t_lgb64 = _median_s(
        lambda: booster.predict(
            np.ascontiguousarray(X_trees, dtype=np.float64), num_iteration=num_iteration, num_threads=1
        ),
        reps,
    )
    t_lgb_default = _median_s(lambda: booster.predict(X_trees, num_iteration=num_iteration), max(5, reps // 5))
    t_feat = _median_s(lambda: model.featurizer.transform_encoded(enc, items, idx, ref), reps)
    t_contrib = _median_s(lambda: model.ranker.contributions(X[:5]), reps)
    t_rank = _median_s(lambda: model.rank(enc, items, idx, 5, ref), max(5, reps // 3))
    if acc_cols is None:
        np.testing.assert_allclose(model.ranker.score(X), booster.predict(X, num_iteration=num_iteration), rtol=1e-6)

    def row(what: str, seconds: float, rows: int = n) -> None:
        section.add_row(
            what=what,
            rows=rows,
            ms=1000.0 * seconds,
            ms_per_1000=1000.0 * seconds * (1000.0 / rows) if rows else None,
            us_per_row=1e6 * seconds / rows if rows else None,
        )

    row("PolkuModel ranker.score", t_score)
    row("lightgbm Booster.predict num_threads=1 (float32 rows)", t_lgb)
    row("lightgbm Booster.predict num_threads=1 (float64 rows)", t_lgb64)
    row("lightgbm Booster.predict default threads", t_lgb_default)
    row("featurizer.transform_encoded", t_feat)
    row("ranker.contributions (top 5)", t_contrib, 5)
    row(f"PolkuModel.rank (first stage {model.first_stage_k} + features + score + contributions)", t_rank)
    ratio = t_score / t_lgb if t_lgb > 0 else None
    _reference_booster(section, fx, X, reps)
    section.note(
        f"{n} candidates of one client from the {n_items}-item catalogue; {booster.num_trees()} trees; medians of "
        f"{reps} runs. ms_per_1000 scales linearly to 1,000 rows."
    )
    section.add_row(what="ratio score / predict(num_threads=1)", rows=n, ratio=ratio)
    section.check("model time / LightGBM predict(num_threads=1)", ratio, "<=", TARGET_RATIO, "x")


def _reference_booster(section: Section, fx: Fixtures, X: np.ndarray, reps: int) -> None:
    """The same comparison with a fixed 300-tree ranker (the served model's size depends on early stopping)."""
    from benchmarks.data import _fallback_model

    ref_model = _fallback_model(fx.world, rounds=300, n_clients=min(300, len(fx.world.clients)))
    booster = ref_model.ranker.booster_  # type: ignore[attr-defined]
    t_score = _median_s(lambda: ref_model.ranker.score(X), reps)
    t_lgb = _median_s(lambda: booster.predict(X, num_threads=1), reps)
    n = len(X)
    for what, seconds in (("300-tree ranker.score", t_score), ("300-tree Booster.predict num_threads=1", t_lgb)):
        section.add_row(
            what=what, rows=n, ms=1000.0 * seconds, ms_per_1000=1e6 * seconds / n, us_per_row=1e6 * seconds / n
        )
    ratio = t_score / t_lgb if t_lgb > 0 else None
    section.add_row(what="ratio score / predict, 300 trees", rows=n, ratio=ratio)
    section.check("300-tree model time / LightGBM predict(num_threads=1)", ratio, "<=", TARGET_RATIO, "x")
