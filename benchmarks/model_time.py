"""Section 2: model time, the served ranker (compiled trees) against LightGBM's own single-thread predict."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from benchmarks.data import Fixtures
from benchmarks.report import Section, SkipSection

TARGET_RATIO = 0.25
"""Issue 13: model time <= 0.25 x ``Booster.predict(num_threads=1)`` on the same rows."""
EQUALITY = 1e-6


def _median_s(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextmanager
def _booster_only(ranker: Any) -> Iterator[None]:
    """Score with LightGBM's booster for a while (what the ranker did before the trees were compiled)."""
    saved = getattr(ranker, "compiled_", None)
    ranker.compiled_ = None
    try:
        yield
    finally:
        ranker.compiled_ = saved


def _row(section: Section, what: str, seconds: float, rows: int, **extra: Any) -> None:
    section.add_row(
        what=what,
        rows=rows,
        ms=1000.0 * seconds,
        ms_per_1000=1e6 * seconds / rows if rows else None,
        us_per_row=1e6 * seconds / rows if rows else None,
        **extra,
    )


def run(section: Section, fx: Fixtures) -> None:
    """Time ``ranker.score`` (compiled trees) vs ``Booster.predict(X, num_threads=1)`` on the same rows."""
    model = fx.model
    # The outcome-aware ranker's trees are its acceptance model; the rest of its score is a few array operations.
    inner = getattr(model.ranker, "acceptance_", None) or model.ranker
    booster = getattr(inner, "booster_", None)
    acc_cols = getattr(model.ranker, "acceptance_columns_", None)
    if booster is None:
        raise SkipSection(f"served ranker {model.ranker.name!r} has no LightGBM booster")
    engine = model.trees
    n_items = max(fx.sizes.catalogues)
    catalogue = fx.catalogue(n_items)
    items = model.encode_items(catalogue)
    ref = fx.reference_date()
    enc = model.encode_client(fx.query_clients(1)[0])
    sizes = sorted({min(n, len(catalogue)) for n in fx.sizes.model_rows})
    idx_all = np.random.default_rng(5).choice(len(catalogue), size=max(sizes), replace=False)
    X_all = model.featurizer.transform_encoded(enc, items, idx_all, ref)
    num_iteration = getattr(inner, "best_iteration_", None)
    reps = fx.sizes.model_repeats
    compiled = getattr(inner, "compiled_", None)
    usable = compiled is not None and compiled.usable

    worst_diff = 0.0
    for n in sizes:
        X = X_all[:n]
        X_trees = X if acc_cols is None else np.ascontiguousarray(X[:, acc_cols])
        r = reps * 5 if n == 1 else reps
        t_score = _median_s(lambda X=X: model.ranker.score(X), r)
        t_lgb = _median_s(lambda Xt=X_trees: booster.predict(Xt, num_iteration=num_iteration, num_threads=1), r)
        with _booster_only(inner):
            t_score_booster = _median_s(lambda X=X: model.ranker.score(X), r)
            booster_scores = inner.score(X_trees)
        _row(section, f"PolkuModel ranker.score ({engine.name if engine else 'no trees'})", t_score, n)
        _row(section, "lightgbm Booster.predict num_threads=1 (float32 rows)", t_lgb, n)
        _row(section, "PolkuModel ranker.score with the booster (before compiled trees)", t_score_booster, n)
        if usable:
            t_trees = _median_s(lambda Xt=X_trees: compiled.predict(Xt), r)
            _row(section, "compiled trees alone", t_trees, n)
            worst_diff = max(worst_diff, float(np.max(np.abs(inner.score(X_trees) - booster_scores))))
        ratio = t_score / t_lgb if t_lgb > 0 else None
        section.add_row(what=f"ratio score / predict(num_threads=1), {n} rows", rows=n, ratio=ratio)
        if n > 1:
            section.check(f"model time / LightGBM predict(num_threads=1), {n} rows", ratio, "<=", TARGET_RATIO, "x")
    if usable:
        section.add_row(what="compiled trees vs booster, max |difference|", rows=max(sizes), diff=f"{worst_diff:.1e}")
        section.check("compiled trees vs booster, max |difference|", worst_diff, "<=", EQUALITY)

    n = max(sizes)
    idx = idx_all[:n]
    t_feat = _median_s(lambda: model.featurizer.transform_encoded(enc, items, idx, ref), reps)
    t_contrib = _median_s(lambda: model.ranker.contributions(X_all[:5]), reps)
    t_rank = _median_s(lambda: model.rank(enc, items, idx, 5, ref), max(5, reps // 3))
    _row(section, "featurizer.transform_encoded", t_feat, n)
    _row(section, "ranker.contributions (top 5, LightGBM TreeSHAP)", t_contrib, 5)
    _row(section, f"PolkuModel.rank (first stage {model.first_stage_k} + features + score + contributions)", t_rank, n)
    section.note(
        f"one client's candidates from the {n_items}-item catalogue; {booster.num_trees()} trees; medians of "
        f"{reps} runs, ratios from the same run. Trees: {engine.detail if engine else 'none'}"
        f" (compiled in {fx.model_info.get('compile_seconds')} s at model build)."
    )
    _reference_ranker(section, fx, X_all, reps)


def _reference_ranker(section: Section, fx: Fixtures, X: np.ndarray, reps: int) -> None:
    """The same comparison with a fixed-size plain LightGBM ranker (the served model is sized by early stopping)."""
    from benchmarks.data import _fallback_model
    from models.compiled import CompileError
    from models.packaging import compile_trees

    rounds = fx.sizes.reference_trees
    if rounds <= 0:
        return
    ref_model = _fallback_model(fx.world, rounds=rounds, n_clients=min(300, len(fx.world.clients)))
    try:
        compile_trees(ref_model)
    except CompileError as exc:
        section.note(f"{rounds}-tree reference not compiled: {exc}")
    ranker: Any = ref_model.ranker
    n = len(X)
    t_score = _median_s(lambda: ranker.score(X), reps)
    t_lgb = _median_s(lambda: ranker.booster_.predict(X, num_threads=1), reps)
    _row(section, f"{rounds}-tree ranker.score ({ref_model.trees.name if ref_model.trees else '-'})", t_score, n)
    _row(section, f"{rounds}-tree Booster.predict num_threads=1", t_lgb, n)
    ratio = t_score / t_lgb if t_lgb > 0 else None
    section.add_row(what=f"ratio score / predict, {rounds} trees", rows=n, ratio=ratio)
    section.check(f"{rounds}-tree model time / LightGBM predict(num_threads=1)", ratio, "<=", TARGET_RATIO, "x")
