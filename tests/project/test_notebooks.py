"""The notebooks execute without errors (nbclient, venv kernel) on a tiny world and a fresh MLflow store.

One tiny world is generated and trained once into a temporary SQLite MLflow store; the kernel gets the data
directory, world directory and tracking URI through its environment. The committed notebooks must carry no
outputs and must be exactly what ``notebooks/build_notebooks.py`` writes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = ("01_world.ipynb", "02_model_report.ipynb", "03_learning_loop.ipynb")
pytestmark = pytest.mark.xdist_group("notebooks")


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build_notebooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A tiny world, one training run with promotion, and the environment the kernel needs."""
    from training.config import TrainConfig
    from training.train import train
    from training.world import generate_world

    data = tmp_path_factory.mktemp("nb-data")
    world_dir = data / "world"
    generate_world(n_clients=300, seed=5).save(world_dir)
    uri = f"sqlite:///{data / 'mlflow.db'}"
    kernels = tmp_path_factory.mktemp("nb-kernels")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLKU_DATA_DIR", str(data))
        mp.setenv("POLKU_WORLD_DIR", str(world_dir))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MPLBACKEND", "Agg")
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        config = TrainConfig(num_boost_round=30, min_group_size=10, max_group_gap=1.0)
        result = train(world_dir, config=config, promote=True, tracking_uri=uri)
        mp.setenv("POLKU_SIMULATION_REPORT", str(_simulation_report(data)))
        # A python3 kernelspec whose argv is this venv's interpreter, found first through JUPYTER_PATH.
        from ipykernel.kernelspec import install

        install(prefix=str(kernels), kernel_name="python3")
        mp.setenv("JUPYTER_PATH", str(kernels / "share" / "jupyter"))
        yield {"uri": uri, "result": result, "world_dir": world_dir}


def _simulation_report(data: Path) -> Path:
    """The three loops on a tiny world (one round, short training), as ``polku simulate --policy all`` writes."""
    import json

    from training.config import TrainConfig
    from training.loops import compare_loops

    fast = TrainConfig(num_boost_round=30, unshown_negatives=5, min_group_size=10, max_group_gap=1.0)
    report = compare_loops(1, exploration=0.5, seed=5, clients=240, train=fast)
    path = data / "simulation.json"
    path.write_text(json.dumps(report, default=float), encoding="utf-8")
    return path


def _execute_all(names: tuple[str, ...]) -> list[nbformat.NotebookNode]:
    from nbclient import NotebookClient

    notebooks = [nbformat.read(NOTEBOOK_DIR / name, as_version=4) for name in names]
    clients = [
        NotebookClient(
            nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(NOTEBOOK_DIR.parent)}}
        )
        for nb in notebooks
    ]

    async def run() -> None:
        await asyncio.gather(*(client.async_execute() for client in clients))

    asyncio.run(run())
    return notebooks


def test_kernelspec_uses_this_interpreter(store: dict[str, Any]) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable


def test_notebooks_execute_without_errors(store: dict[str, Any]) -> None:
    executed = _execute_all(NOTEBOOKS)  # nbclient raises CellExecutionError on the first failing cell
    for name, nb in zip(NOTEBOOKS, executed, strict=True):
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), name
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{name}: {errors}"
        images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
        assert images, f"{name} shows no figure"


def test_reports_read_the_store(store: dict[str, Any]) -> None:
    from training import reports

    uri, result = store["uri"], store["result"]
    runs = reports.runs_frame(tracking_uri=uri)
    assert runs["run_id"].tolist() == [result.run_id]
    assert int(runs["k"].iloc[0]) == 10
    long = reports.runs_metrics(tracking_uri=uri)
    assert set(long["run_id"]) == {result.run_id}
    assert len(long) == len(result.metrics)
    table = reports.ranker_comparison(long, result.run_id)
    assert table.loc["lightgbm", "ndcg_10"] == pytest.approx(result.metrics["lightgbm.ndcg_10"])
    assert table.loc["oracle", "ndcg_10/oracle"] == pytest.approx(1.0)
    registry = reports.registry_frame(tracking_uri=uri)
    assert registry["version"].tolist() == [int(result.model_version)]
    assert registry["role"].iloc[0] in {"champion", "challenger"}
    assert registry["role"].iloc[0] == result.decision.alias
    assert reports.focus_version(registry) == int(result.model_version)
    importance = reports.feature_importance_frame(f"models:/{reports.MODEL_NAME}/{result.model_version}", top=5)
    assert len(importance) == 5
    assert importance["gain"].is_monotonic_decreasing
    assert reports.runs_frame("no-such-experiment", tracking_uri=uri).empty
    assert reports.runs_metrics("no-such-experiment", tracking_uri=uri).empty
    assert reports.registry_frame("no-such-model", tracking_uri=uri).empty


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_no_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: strip outputs (python notebooks/build_notebooks.py)"
            assert cell.execution_count is None, name
            assert "execution" not in cell.metadata, name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_match_the_generator(name: str) -> None:
    builder = _builder()
    expected = builder.build(builder.NOTEBOOKS[name])
    committed = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    assert [c.source for c in committed.cells] == [c.source for c in expected.cells], (
        f"{name} differs from notebooks/build_notebooks.py: regenerate it"
    )
