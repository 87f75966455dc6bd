"""Training never reads the world's truth: only the log columns a real centre's records could hold.

Two guards: a static one (no module that builds training data or models names the truth, its latent parts or the
history's noisy ``outcome_score``), and a behavioural one (training on a world whose truth raises on any use and
whose history lacks ``outcome_score`` gives exactly the same model as on the full world).
"""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TRAINING_MODULES = (
    "training/datasets.py",
    "training/outcome_training.py",
    "training/item_effects.py",
    "training/feedback.py",
    "training/train.py",
    "training/config.py",
    "training/ope.py",
)
FORBIDDEN_NAMES = {
    "truth",
    "Truth",
    "outcome_score",
    "expected_utility",
    "utility_at",
    "item_quality",
    "client_factors",
    "item_factors",
    "relevance_of",
}
# train.py hands the world to evaluation (which grades by the truth); it may name the test set, not the truth.
FORBIDDEN_IMPORTS = ("training.world.truth", "training.oracle", "training.evaluate")


def _sources() -> list[Path]:
    files = [*sorted((ROOT / "features").rglob("*.py")), *sorted((ROOT / "models").rglob("*.py"))]
    return files + [ROOT / m for m in TRAINING_MODULES]


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FORBIDDEN_NAMES:
            name = node.value
        if name in FORBIDDEN_NAMES:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {name!r}")
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            module = node.module
            if module in FORBIDDEN_IMPORTS and path.name != "train.py":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    return found


def test_no_training_or_model_module_names_the_truth() -> None:
    offences = [o for path in _sources() for o in _offences(path)]
    assert not offences, "\n".join(offences)


def test_the_guard_catches_a_read_of_the_truth(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(world):\n    return world.truth.expected_utility([], [])\n", encoding="utf-8")
    assert len(_offences_at(bad)) == 2
    bad.write_text("def f(history):\n    return history['outcome_score']\n", encoding="utf-8")
    assert len(_offences_at(bad)) == 1


def _offences_at(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return sorted(names & FORBIDDEN_NAMES)


class _SealedTruth:
    """Stands in for the world's truth: any use fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"training read the world's truth ({name})")


@pytest.fixture(scope="module")
def world() -> Any:
    from training.world import generate_world

    return generate_world(n_clients=600, seed=5)


def test_training_runs_without_the_truth_and_gives_the_same_model(world: Any) -> None:
    from training.config import TrainConfig
    from training.datasets import build_training_data
    from training.train import fit_ranker

    cfg = TrainConfig(num_boost_round=40, min_group_size=10)
    sealed = replace(world, truth=_SealedTruth(), history=world.history.drop(columns=["outcome_score"]))
    fit_sealed = fit_ranker(build_training_data(sealed, cfg), cfg)
    fit_full = fit_ranker(build_training_data(world, cfg), cfg)
    X = fit_full.data.train.X
    np.testing.assert_array_equal(fit_sealed.data.train.X, X)
    np.testing.assert_array_equal(fit_sealed.ranker.score(X), fit_full.ranker.score(X))
    assert fit_sealed.effects.table() == fit_full.effects.table()
