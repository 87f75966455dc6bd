"""Saving, loading and registering a :class:`~models.package.PolkuModel`: the bundle on disk and the MLflow pyfunc.

A bundle directory holds ``featurizer.json`` (the fitted :class:`~features.pairs.PairFeaturizer` state),
``ranker/`` (``ranker.json`` and, for LightGBM, ``booster.txt`` and the compiled trees) and ``metadata.json``.
The same files are the artifacts of the MLflow pyfunc (:class:`PolkuPyfunc`), logged as "models from code" so
that no object of ours is pickled. ``mlflow`` and ``lightgbm`` are imported inside functions only (each costs
seconds at import).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np

from features.pairs import PairFeaturizer
from features.records import ClientProfile, Opportunity
from features.taxonomy import default_taxonomy
from models.batch import predict_records
from models.compiled import CompileError, TreeEngine, compile_forest, should_compile
from models.package import DEFAULT_FIRST_STAGE_K, PREDICTION_EXTRAS, ModelLoadError, PolkuModel, forest_of
from models.rankers import Ranker, RankerError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MODEL_FORMAT: Final = "polku-model"
MODEL_FORMAT_VERSION: Final = 1
FEATURIZER_FILE: Final = "featurizer.json"
RANKER_DIR: Final = "ranker"
METADATA_FILE: Final = "metadata.json"
REGISTERED_MODEL_NAME: Final = "polku-ranker"
INPUT_COLUMNS: Final = ("client_json", "opportunity_json")
_PIP_PACKAGES: Final = ("mlflow", "lightgbm", "numpy", "scipy", "scikit-learn", "pandas", "pydantic")
_ENTRY_SCRIPT: Final = '''"""MLflow models-from-code entry point of the Polku ranker (the package is installed)."""

import mlflow

from models.packaging import PolkuPyfunc

mlflow.models.set_model(PolkuPyfunc())
'''


def compile_trees(model: PolkuModel) -> TreeEngine | None:
    """Compile the model's trees for this platform (``models.compiled``); the model scores with them from now on.

    Takes seconds. Scores stay equal to the booster's within ``models.compiled.TOLERANCE``, and
    :func:`save_local` and :func:`log_polku_model` ship the library with the model.

    Returns:
        The new tree engine, or None when the model has no LightGBM trees (nothing to compile).

    Raises:
        models.compiled.CompileError: lleaves or a C compiler is missing, or the compiled trees differ.
    """
    forest = forest_of(model.ranker)
    if forest is None:
        return None
    forest.compiled_ = compile_forest(forest.model_text(), forest.n_features, forest.predict_booster)
    return forest.tree_engine


# -- bundle on disk -------------------------------------------------------------------------------------------


def _write_bundle(model: PolkuModel, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, **model.metadata}
    meta.setdefault("saved_at", datetime.now(UTC).isoformat(timespec="seconds"))
    (directory / FEATURIZER_FILE).write_text(json.dumps(model.featurizer.to_dict(), sort_keys=True), encoding="utf-8")
    model.ranker.save(directory / RANKER_DIR)
    (directory / METADATA_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str), encoding="utf-8")
    return directory


def save_local(model: PolkuModel, directory: str | Path) -> Path:
    """Write a model bundle to ``directory``, replacing any earlier one atomically (rename).

    Returns:
        The bundle directory.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    _write_bundle(model, staging)
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{what} ({path.name}): cannot read ({type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{what} ({path.name}): expected a JSON object")
    return data


def _load_parts(featurizer_file: Path, ranker_dir: Path, metadata_file: Path) -> PolkuModel:
    meta = _read_json(metadata_file, "model metadata")
    if meta.get("format") != MODEL_FORMAT or meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise ModelLoadError(
            f"model metadata: format {meta.get('format')!r} v{meta.get('format_version')!r} is not "
            f"{MODEL_FORMAT!r} v{MODEL_FORMAT_VERSION}: retrain with this version of Polku"
        )
    for key in ("name", "version", "taxonomy_version", "feature_names"):
        if key not in meta:
            raise ModelLoadError(f"model metadata: {key!r} is missing")
    current = default_taxonomy().version
    if meta["taxonomy_version"] != current:
        raise ModelLoadError(
            f"model metadata: trained on taxonomy {meta['taxonomy_version']!r}, this service ships {current!r}: "
            "retrain the model"
        )
    state = _read_json(featurizer_file, "featurizer")
    try:
        featurizer = PairFeaturizer.from_dict(state)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"featurizer: {exc}") from exc
    try:
        ranker = Ranker.load(ranker_dir)
    except RankerError as exc:
        raise ModelLoadError(f"ranker: {exc}") from exc
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
    return PolkuModel(featurizer, ranker, meta, first_stage_k=int(meta.get("first_stage_k", DEFAULT_FIRST_STAGE_K)))


def load_local(directory: str | Path) -> PolkuModel:
    """Read a bundle written by :func:`save_local`.

    Raises:
        ModelLoadError: a file is missing or corrupt, or the model does not fit this code or taxonomy.
    """
    path = Path(directory)
    if not path.is_dir():
        raise ModelLoadError(f"model bundle {path}: no such directory")
    return _load_parts(path / FEATURIZER_FILE, path / RANKER_DIR, path / METADATA_FILE)


# -- MLflow ---------------------------------------------------------------------------------------------------


def _pip_requirements() -> list[str]:
    reqs = []
    for pkg in _PIP_PACKAGES:
        try:
            reqs.append(f"{pkg}=={importlib_metadata.version(pkg)}")
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            reqs.append(pkg)
    return reqs


def model_signature() -> Any:
    """The pyfunc signature.

    Inputs: JSON strings of a client and an opportunity (+ optional ISO reference date); outputs per row:
    ``score``, ``p_accept`` (will the client take it up when suggested first) and ``expected_outcome``
    (E[value | accepted], see ``models.outcome``), all doubles.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "client_json"),
            ColSpec("string", "opportunity_json"),
            ColSpec("string", "reference_date", required=False),
        ]
    )
    outputs = Schema([ColSpec("double", name) for name in ("score", *PREDICTION_EXTRAS)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def make_input_example(
    clients: Sequence[ClientProfile], opportunities: Sequence[Opportunity], n: int = 3
) -> pd.DataFrame:
    """A small pyfunc input frame: the first client against the first ``n`` opportunities."""
    import pandas as pd

    if not clients or not opportunities:
        raise ValueError("make_input_example needs at least one client and one opportunity")
    client_json = clients[0].model_dump_json()
    return pd.DataFrame(
        {
            "client_json": [client_json] * min(n, len(opportunities)),
            "opportunity_json": [o.model_dump_json() for o in opportunities[:n]],
        }
    )


R = TypeVar("R", ClientProfile, Opportunity)


def _parse_column(record: type[R], texts: Any, codes: Any, column: str, noun: str) -> list[R]:
    """Validate each distinct JSON text of ``column`` as ``record``; a bad one names its first row."""
    from pydantic import ValidationError

    out: list[R] = []
    for i, text in enumerate(texts):
        try:
            out.append(record.model_validate_json(text))
        except ValidationError as exc:
            row = int(np.flatnonzero(codes == i)[0])
            raise ValueError(
                f"model input row {row}: {column} is not a valid {noun} ({exc.error_count()} errors)"
            ) from None
    return out


def predict_frame(model: PolkuModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Score a frame with ``client_json`` and ``opportunity_json`` columns (and optional ``reference_date``).

    Returns:
        A frame with ``score``, ``p_accept`` and ``expected_outcome`` per input row, in input order.

    Raises:
        ValueError: a column is missing or a row does not hold a valid record (the message names the row and
            column, never the submitted values).
    """
    import pandas as pd

    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"model input: missing column(s) {', '.join(missing)}")
    n = len(frame)
    if n == 0:
        return pd.DataFrame({name: np.zeros(0, dtype=np.float64) for name in ("score", *PREDICTION_EXTRAS)})
    client_codes, client_json = pd.factorize(frame["client_json"].astype(str), sort=False)
    opp_codes, opp_json = pd.factorize(frame["opportunity_json"].astype(str), sort=False)
    clients = _parse_column(ClientProfile, client_json, client_codes, "client_json", "client")
    opportunities = _parse_column(Opportunity, opp_json, opp_codes, "opportunity_json", "opportunity")
    ref_per_client: list[date | None] = [None] * len(clients)
    ci = np.asarray(client_codes, dtype=np.int64)
    if "reference_date" in frame.columns:
        # One reference date per distinct (client, date): split clients that come with several dates.
        keys = [f"{c}|{d}" for c, d in zip(ci, frame["reference_date"].astype(str), strict=True)]
        key_codes, key_values = pd.factorize(pd.Series(keys), sort=False)
        split_clients: list[ClientProfile] = []
        ref_per_client = []
        for key in key_values:
            c_str, d_str = str(key).split("|", 1)
            split_clients.append(clients[int(c_str)])
            ref_per_client.append(_parse_date(d_str))
        clients, ci = split_clients, np.asarray(key_codes, dtype=np.int64)
    return pd.DataFrame(predict_records(model, clients, opportunities, ci, np.asarray(opp_codes), ref_per_client))


def _parse_date(text: str) -> date | None:
    if text in ("", "None", "nan", "NaT"):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError("model input: reference_date must be an ISO date (YYYY-MM-DD)") from None


@cache
def _pyfunc_class() -> type:
    from mlflow.pyfunc.model import PythonModel

    # MLflow inspects predict's (deliberately absent) type hints at class creation and warns; the explicit
    # signature given at logging is what validates inputs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)

        class PolkuPyfunc(PythonModel):  # type: ignore[misc]
            """MLflow pyfunc wrapper: rebuilds the :class:`PolkuModel` from its artifacts, scores frames."""

            model: PolkuModel | None = None

            def load_context(self, context: Any) -> None:
                """Read ``featurizer``, ``ranker`` and ``metadata`` from the model's artifacts."""
                arts = context.artifacts
                try:
                    paths = (Path(arts["featurizer"]), Path(arts["ranker"]), Path(arts["metadata"]))
                except KeyError as exc:
                    raise ModelLoadError(f"pyfunc artifacts: {exc.args[0]!r} is missing") from exc
                self.model = _load_parts(*paths)

            # No annotations on purpose: MLflow reads predict's type hints and would reinterpret the input.
            def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                """Scores for rows of ``client_json``, ``opportunity_json`` (and optional ``reference_date``)."""
                del context, params
                if self.model is None:
                    raise ModelLoadError("PolkuPyfunc.predict called before load_context")
                return predict_frame(self.model, model_input)

    PolkuPyfunc.__module__ = __name__
    PolkuPyfunc.__qualname__ = "PolkuPyfunc"
    return PolkuPyfunc


def __getattr__(name: str) -> Any:
    # PolkuPyfunc subclasses mlflow.pyfunc.PythonModel; build it on first access so importing this module
    # does not import mlflow.
    if name == "PolkuPyfunc":
        return _pyfunc_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def log_polku_model(
    model: PolkuModel,
    *,
    name: str = "model",
    registered_model_name: str | None = REGISTERED_MODEL_NAME,
    input_example: pd.DataFrame | None = None,
    compiled_trees: bool | None = None,
) -> Any:
    """Log the model as an MLflow pyfunc (models from code; bundle files as artifacts) and register it.

    Call inside an active run (``mlflow.start_run``) to attach the model to the run. The LightGBM trees are
    compiled for this platform first (:func:`compile_trees`) and the library ships in the ``ranker`` artifact;
    when they cannot be compiled here, a warning is logged and the model is logged without them.

    Args:
        model: the model to log.
        name: the logged model's name within the run.
        registered_model_name: registry name (``None`` = do not register).
        input_example: a frame from :func:`make_input_example`.
        compiled_trees: compile the trees (default: the ``POLKU_COMPILE_TREES`` environment switch, on unless
            ``0``/``false``/``off``).

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``registered_model_version``, ...).
    """
    import mlflow.pyfunc

    engine = model.trees
    wanted = should_compile() if compiled_trees is None else compiled_trees
    if wanted and engine is not None and not engine.compiled:
        try:
            compile_trees(model)
        except CompileError as exc:
            logger.warning("logging the model without compiled trees: %s", exc)
    with tempfile.TemporaryDirectory(prefix="polku-model-") as tmp:
        root = Path(tmp)
        bundle = _write_bundle(model, root / "bundle")
        entry = root / "polku_pyfunc.py"
        entry.write_text(_ENTRY_SCRIPT, encoding="utf-8")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(entry),
            artifacts={
                "featurizer": str(bundle / FEATURIZER_FILE),
                "ranker": str(bundle / RANKER_DIR),
                "metadata": str(bundle / METADATA_FILE),
            },
            signature=model_signature(),
            input_example=input_example,
            registered_model_name=registered_model_name,
            pip_requirements=_pip_requirements(),
        )


def load_polku_model(model_uri: str) -> PolkuModel:
    """Download a logged model's artifacts and rebuild the :class:`PolkuModel` (no pyfunc, no unpickling).

    Args:
        model_uri: e.g. ``models:/polku-ranker@champion`` or ``runs:/<id>/model``.

    Raises:
        ModelLoadError: MLflow cannot provide the model, or its files are corrupt or incompatible.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in service logs
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="polku-dl-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
            flavor = Model.load(local).flavors.get("python_function", {})
        except (MlflowException, OSError) as exc:
            raise ModelLoadError(f"{model_uri}: cannot download the model ({type(exc).__name__}: {exc})") from exc
        artifacts = flavor.get("artifacts") if isinstance(flavor, dict) else None
        if not isinstance(artifacts, dict):
            raise ModelLoadError(f"{model_uri}: not a Polku pyfunc (no artifacts in MLmodel)")
        try:
            paths = [local / str(artifacts[key]["path"]) for key in ("featurizer", "ranker", "metadata")]
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"{model_uri}: artifact {exc} is missing from MLmodel") from exc
        model = _load_parts(paths[0], paths[1], paths[2])
    model.metadata.setdefault("model_uri", model_uri)
    return model
