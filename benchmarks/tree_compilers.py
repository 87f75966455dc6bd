"""lleaves vs Treelite/TL2cgen on the served acceptance booster: compile time, latency, equality.

``python -m benchmarks.tree_compilers [--bundle DIR] [--repeats N]`` prints a Markdown table (the one in
``docs/model-card.md``). Without ``--bundle`` it builds the benchmark world and model (as ``make bench`` does).
Both tools are compared as Polku would ship them: lleaves through ``models.compiled`` (object linked into a
shared library, called with ctypes), TL2cgen through ``tl2cgen.export_lib`` (gcc) and ``tl2cgen.Predictor``
with one thread. Latency is the median of ``--repeats`` calls on one client's candidates, against
``Booster.predict(num_threads=1)`` on the same float64 rows in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROWS = (1, 300, 600, 900)


def _median_us(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def _served_model(bundle: Path | None) -> Any:
    if bundle is not None:
        from models.packaging import load_local

        return load_local(bundle)
    from benchmarks.data import Fixtures, Sizes

    return Fixtures(sizes=Sizes(), workdir=Path(tempfile.mkdtemp(prefix="polku-trees-"))).model


def _rows(model: Any, n_clients: int = 20, n: int = max(ROWS)) -> np.ndarray:
    """Acceptance-model rows of ``n_clients`` clients against ``n`` catalogue items each (float64)."""
    from benchmarks.data import DEFAULT_REFERENCE, clone_opportunities
    from training.world import generate_world

    world = generate_world(n_clients=200, seed=7)
    catalogue = clone_opportunities(world.opportunities, 5 * n)
    items = model.encode_items(catalogue)
    cols = getattr(model.ranker, "acceptance_columns_", None)
    rng = np.random.default_rng(5)
    out = []
    for client in world.clients[:n_clients]:
        idx = rng.choice(len(catalogue), size=n, replace=False)
        X = model.featurizer.transform_encoded(model.encode_client(client), items, idx, DEFAULT_REFERENCE)
        out.append(np.ascontiguousarray((X if cols is None else X[:, cols]).astype(np.float64)))
    return np.stack(out)


def _lleaves(text: str, n_features: int, reference: Callable[[np.ndarray], Any]) -> dict[str, Any]:
    from models.compiled import LIBRARY_FILE, compile_forest

    t0 = time.perf_counter()
    trees = compile_forest(text, n_features, reference)
    return {
        "compile_s": time.perf_counter() - t0,
        "kb": len(trees.files[LIBRARY_FILE]) / 1024,
        "predict": trees.predict,
        "load_needs": "ctypes (the library calls nothing outside itself)",
    }


def _tl2cgen(booster: Any, workdir: Path) -> dict[str, Any]:
    import tl2cgen
    import treelite

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = treelite.frontend.from_lightgbm(booster)
        tl2cgen.export_lib(model, toolchain="gcc", libpath=str(workdir / "tl2cgen.so"), params={"parallel_comp": 2})
    compile_s = time.perf_counter() - t0
    predictor = tl2cgen.Predictor(str(workdir / "tl2cgen.so"), nthread=1)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.asarray(predictor.predict(tl2cgen.DMatrix(X))).reshape(-1)

    return {
        "compile_s": compile_s,
        "kb": (workdir / "tl2cgen.so").stat().st_size / 1024,
        "predict": predict,
        "load_needs": "the tl2cgen package (its runtime library and libgomp)",
    }


def main(argv: list[str] | None = None) -> int:
    """Measure both compilers and print the table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.tree_compilers", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, default=None, help="a saved model bundle (default: train the bench model)")
    p.add_argument("--repeats", type=int, default=300)
    args = p.parse_args(argv)
    model = _served_model(args.bundle)
    inner = getattr(model.ranker, "acceptance_", None) or model.ranker
    booster = inner.booster_
    text = inner.model_text()
    rows = _rows(model)
    workdir = Path(tempfile.mkdtemp(prefix="polku-tl2cgen-"))
    tools = {
        "lleaves 1.3.0": _lleaves(text, inner.n_features, inner.predict_booster),
        "TL2cgen 1.0.0 (Treelite 4.8.1)": _tl2cgen(booster, workdir),
    }
    print(f"{booster.num_trees()} trees, {inner.n_features} features; medians of {args.repeats} calls\n")
    header = ["", "compile s", "library KB", "max abs diff"] + [f"{n} row(s) µs (ratio)" for n in ROWS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    base = {n: _median_us(lambda n=n: booster.predict(rows[0, :n], num_threads=1), args.repeats) for n in ROWS}
    print("| Booster.predict(num_threads=1) | – | – | – | " + " | ".join(f"{base[n]:.0f} (1.00)" for n in ROWS) + " |")
    for name, tool in tools.items():
        predict = tool["predict"]
        diff = max(float(np.max(np.abs(predict(X) - booster.predict(X, num_threads=1)))) for X in rows)
        cells = []
        for n in ROWS:
            us = _median_us(lambda n=n, predict=predict: predict(rows[0, :n]), args.repeats)
            cells.append(f"{us:.0f} ({us / base[n]:.2f})")
        print(f"| {name} | {tool['compile_s']:.1f} | {tool['kb']:.0f} | {diff:.1e} | " + " | ".join(cells) + " |")
    print()
    for name, tool in tools.items():
        print(f"- {name}: loading needs {tool['load_needs']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
