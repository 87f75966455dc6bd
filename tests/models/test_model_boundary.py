"""One model boundary: nothing outside ``models/package.py`` reaches into a model's featurizer or ranker.

Callers rank items for a client (``PolkuModel.rank``/``rank_groups``), rank clients for an item
(``rank_clients``), or score prepared rows (``features`` + ``score_rows``). The check is static: an attribute
``.featurizer`` or ``.ranker`` read from an expression naming a model (``model``, ``self.model``,
``snapshot.loaded.model``, ``ref_model``, ...) anywhere in the packages, the CLI or the benchmarks fails it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "models/package.py",  # the boundary itself
    "models/packaging.py",  # saves and loads what the boundary holds
    "benchmarks/model_time.py",  # compares the served trees with LightGBM's own predict on purpose
    "benchmarks/tree_compilers.py",  # compiles the served booster with each tree compiler on purpose
}


def _names_a_model(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id.endswith("model")
    if isinstance(node, ast.Attribute):
        return node.attr.endswith("model")
    if isinstance(node, ast.Subscript):  # models["lightgbm"].ranker
        return _names_a_model(node.value)
    return False


def _crossings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return [
        f"{name}:{node.lineno} reads .{node.attr} of a model"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("featurizer", "ranker") and _names_a_model(node.value)
    ]


def _files() -> list[Path]:
    files = [ROOT / "polku.py"]
    for package in ("features", "models", "training", "service", "benchmarks"):
        files += sorted((ROOT / package).rglob("*.py"))
    return [f for f in files if str(f.relative_to(ROOT)) not in ALLOWED]


def test_nothing_outside_the_package_touches_a_models_featurizer_or_ranker() -> None:
    crossings = [c for f in _files() for c in _crossings(f)]
    assert not crossings, "\n".join(crossings)


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f(snapshot, model, data):\n    return snapshot.loaded.model.ranker, model.featurizer, data.ranker\n"
    )
    assert len(_crossings(probe)) == 2
