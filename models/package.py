"""The scoring package: featurizer + ranker + metadata, as one object in process and one MLflow pyfunc artifact.

A :class:`PolkuModel` is what the service scores with. On disk it is a *bundle* directory:
``featurizer.json`` (the fitted :class:`~features.pairs.PairFeaturizer` state), ``ranker/`` (``ranker.json``
and, for LightGBM, ``booster.txt``) and ``metadata.json``. The same files are the artifacts of the MLflow
pyfunc (:class:`PolkuPyfunc`), logged as "models from code" so that no object of ours is pickled.
``mlflow`` and ``lightgbm`` are imported inside functions only (each costs seconds at import).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from features.errors import PolkuError
from features.pairs import EncodedClients, EncodedItems, PairFeaturizer
from features.records import KINDS, ClientProfile, Opportunity
from features.taxonomy import default_taxonomy
from models.compiled import CompileError, TreeEngine, compile_forest, should_compile
from models.rankers import LightGBMRanker, PointsRanker, Ranker, RankerError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MODEL_FORMAT: Final = "polku-model"
MODEL_FORMAT_VERSION: Final = 1
FEATURIZER_FILE: Final = "featurizer.json"
RANKER_DIR: Final = "ranker"
METADATA_FILE: Final = "metadata.json"
DEFAULT_FIRST_STAGE_K: Final = 300
REGISTERED_MODEL_NAME: Final = "polku-ranker"
INPUT_COLUMNS: Final = ("client_json", "opportunity_json")
PREDICTION_EXTRAS: Final = ("p_accept", "expected_outcome")
"""Pyfunc output columns beside ``score`` (NaN for rankers without outcome models)."""
_PIP_PACKAGES: Final = ("mlflow", "lightgbm", "numpy", "scipy", "scikit-learn", "pandas", "pydantic")
_ENTRY_SCRIPT: Final = '''"""MLflow models-from-code entry point of the Polku ranker (the package is installed)."""

import mlflow

from models.package import PolkuPyfunc

mlflow.models.set_model(PolkuPyfunc())
'''


class ModelLoadError(PolkuError):
    """A model bundle or MLflow artifact is missing, corrupt or incompatible with this code or taxonomy."""


@dataclass(frozen=True)
class RankResult:
    """Top-k of one client's candidates.

    Attributes:
        indices: catalogue positions, best first.
        scores: ranker score per returned item.
        contributions: ``(k, n_features + 1)`` per-feature contributions of the returned items (last = bias).
        n_scored: how many candidates the ranker scored (after the first stage).
        feature_names: column names of ``contributions`` (without the bias column).
        outcomes: per returned item, the ranker's outcome estimates (``p_accept``, ``expected_outcome``, ...;
            see ``models.outcome``), or None for rankers without them (the points fallback).
    """

    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    contributions: npt.NDArray[np.float64]
    n_scored: int
    feature_names: tuple[str, ...]
    outcomes: Mapping[str, npt.NDArray[np.float64]] | None = None


@dataclass(frozen=True)
class ClientRanking:
    """Clients ranked for one item.

    Attributes:
        rows: rows of the client batch, best first.
        scores: ranker score per returned row.
        n_scored: how many clients the ranker scored (after the first stage).
    """

    rows: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    n_scored: int


class PolkuModel:
    """A fitted featurizer, a ranker and the metadata that identifies them.

    Args:
        featurizer: the fitted pair featurizer.
        ranker: a fitted ranker over the featurizer's columns.
        metadata: at least ``name`` and ``version``; ``taxonomy_version`` and ``feature_names`` are filled in
            from the featurizer and checked when given.
        first_stage_k: candidate lists longer than this (items of one client, or clients of one item) are cut by
            the featurizer's cheap first stage before the ranker scores them; one setting for both directions,
            logged with the training run.

    Raises:
        ModelLoadError: featurizer, ranker and metadata disagree on feature names or taxonomy version.
    """

    def __init__(
        self,
        featurizer: PairFeaturizer,
        ranker: Ranker,
        metadata: Mapping[str, Any] | None = None,
        *,
        first_stage_k: int = DEFAULT_FIRST_STAGE_K,
    ) -> None:
        self.featurizer = featurizer
        self.ranker = ranker
        names = [str(n) for n in featurizer.get_feature_names_out()]
        tax_version = str(getattr(featurizer, "taxonomy_version_", None) or default_taxonomy().version)
        meta: dict[str, Any] = {
            "name": "polku-ranker",
            "version": "0",
            "ranker": ranker.name,
            "fallback": False,
            **dict(metadata or {}),
        }
        meta.setdefault("taxonomy_version", tax_version)
        meta.setdefault("feature_names", names)
        meta["first_stage_k"] = int(first_stage_k)
        if list(meta["feature_names"]) != names:
            raise ModelLoadError("metadata.feature_names differ from the featurizer's: retrain or re-export the model")
        ranker_names = ranker.feature_names_
        if ranker_names is None or list(ranker_names) != names:
            raise ModelLoadError("ranker feature names differ from the featurizer's: the model is incompatible")
        if meta["taxonomy_version"] != tax_version:
            raise ModelLoadError(
                f"metadata.taxonomy_version {meta['taxonomy_version']!r} differs from the featurizer's {tax_version!r}"
            )
        self.metadata = meta

    @property
    def first_stage_k(self) -> int:
        """Candidates the ranker scores per list (the rest are cut by the first stage); part of the model."""
        return int(self.metadata["first_stage_k"])

    @first_stage_k.setter
    def first_stage_k(self, value: int) -> None:
        self.metadata["first_stage_k"] = int(value)

    def __repr__(self) -> str:
        return f"PolkuModel(name={self.name!r}, version={self.version!r}, ranker={self.ranker.name!r})"

    @property
    def name(self) -> str:
        """Model name from the metadata."""
        return str(self.metadata["name"])

    @property
    def version(self) -> str:
        """Model version from the metadata."""
        return str(self.metadata["version"])

    @property
    def is_fallback(self) -> bool:
        """True for the built-in points baseline served when no champion is available."""
        return bool(self.metadata.get("fallback", False))

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature column names."""
        return tuple(self.metadata["feature_names"])

    @property
    def trees(self) -> TreeEngine | None:
        """Which code computes the ranker's trees (compiled library or LightGBM's booster); None without trees."""
        forest = _forest_ranker(self.ranker)
        return None if forest is None else forest.tree_engine

    def encode_items(self, opportunities: Sequence[Opportunity]) -> EncodedItems:
        """Encode a catalogue once (cached by the featurizer)."""
        return self.featurizer.encode_items(opportunities)

    def encode_client(self, client: ClientProfile) -> EncodedClients:
        """Encode one client (a batch of one)."""
        return self.featurizer.encode_client(client)

    def encode_clients(self, clients: Sequence[ClientProfile]) -> EncodedClients:
        """Encode many clients into one batch (a candidate pool)."""
        return self.featurizer.encode_clients(clients)

    def features(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        item_idx: npt.ArrayLike,
        reference_date: date | None = None,
    ) -> npt.NDArray[np.float32]:
        """Prepared feature rows of one client against catalogue positions (for :meth:`score_rows`)."""
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        return self.featurizer.transform_encoded(self._encoded(enc_client), enc_items, idx, reference_date)

    def score_rows(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Ranker scores of prepared rows (from :meth:`features`; rows of many requests may be stacked)."""
        return self.ranker.score(np.asarray(X, dtype=np.float32))

    def explain_rows(
        self, X: npt.ArrayLike, scores: npt.ArrayLike | None = None
    ) -> tuple[npt.NDArray[np.float64], dict[str, npt.NDArray[np.float64]] | None]:
        """Per-feature contributions and outcome estimates of prepared rows, with one call into the trees.

        Contributions are ``(n, n_features + 1)`` (last column the bias); rows sum to ``scores`` when given.
        """
        return self.ranker.explanation(np.asarray(X, dtype=np.float32), scores)

    def outcome_rows(self, X: npt.ArrayLike) -> dict[str, npt.NDArray[np.float64]] | None:
        """Outcome estimates of prepared rows (``p_accept``, ``expected_outcome``, ...), None for the baselines."""
        return self.ranker.outcomes(np.asarray(X, dtype=np.float32))

    def first_stage(
        self, enc_client: EncodedClients | ClientProfile, enc_items: EncodedItems, item_idx: npt.ArrayLike, k: int
    ) -> npt.NDArray[np.int64]:
        """The ``k`` most promising of ``item_idx`` by the cheap first stage, best first."""
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        return np.asarray(self.featurizer.first_stage(self._encoded(enc_client), enc_items, idx, k), dtype=np.int64)

    def rank_clients(
        self,
        clients: EncodedClients,
        enc_items: EncodedItems,
        item_index: int,
        rows: npt.ArrayLike,
        k: int,
        reference_date: date | None = None,
    ) -> ClientRanking:
        """The best ``k`` of clients ``rows`` of a batch for one catalogue item (candidate lists).

        More than ``first_stage_k`` eligible clients are cut by the first stage; the survivors are featurized
        and scored in one ranker call. Ties are broken by client id.

        Args:
            clients: from :meth:`encode_clients`.
            enc_items: the encoded catalogue.
            item_index: the item's position in ``enc_items``.
            rows: the eligible clients' rows in ``clients``.
            k: how many to return.
            reference_date: day against which waiting times are measured.

        Returns:
            Rows best first with their scores, and how many the ranker scored.
        """
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.first_stage_k > 0 and idx.size > self.first_stage_k:
            first = self.featurizer.first_stage_clients(clients, enc_items, item_index, idx)
            keep = np.argpartition(-first, self.first_stage_k - 1)[: self.first_stage_k]
            idx = np.sort(idx[keep])
        if idx.size == 0 or k <= 0:
            return ClientRanking(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), int(idx.size))
        X = self.featurizer.transform_many_clients(clients, enc_items, item_index, reference_date, rows=idx)
        scores = self.score_rows(X)
        n = min(k, idx.size)
        top = np.argpartition(-scores, n - 1)[:n] if n < idx.size else np.arange(idx.size)
        ids = np.array([clients.client_ids[int(r)] for r in idx[top]], dtype=str)
        order = top[np.lexsort((ids, -scores[top]))]
        return ClientRanking(idx[order], scores[order], int(idx.size))

    def tree_count(self) -> int | None:
        """Trees the ranker evaluates per row (None for rankers without trees)."""
        ranker: Any = self.ranker
        booster = getattr(getattr(ranker, "acceptance_", None) or ranker, "booster_", None)
        return None if booster is None else int(booster.num_trees())

    def points_baseline(self, *, name: str = "points") -> PolkuModel:
        """The points ranker over this model's featurizer (the service's fallback, and the gate's reference)."""
        return build_fallback_model(self.featurizer, name=name)

    def feature_importance(self, importance_type: str = "gain") -> dict[str, float] | None:
        """Importance per feature of a learnt ranker (None for the points and popularity baselines)."""
        importance = getattr(self.ranker, "feature_importance", None)
        return None if importance is None else dict(importance(importance_type))

    def score(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        item_idx: npt.ArrayLike,
        reference_date: date | None = None,
    ) -> npt.NDArray[np.float64]:
        """Ranker scores of one client against catalogue positions ``item_idx`` (no first stage)."""
        enc = self._encoded(enc_client)
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        return self.score_rows(self.features(enc, enc_items, idx, reference_date))

    def rank(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        item_idx: npt.ArrayLike,
        k: int,
        reference_date: date | None = None,
    ) -> RankResult:
        """Top-``k`` of ``item_idx`` for one client, with contributions for the returned items only.

        With more than ``first_stage_k`` candidates, the featurizer's first stage keeps the
        ``first_stage_k`` most promising before the ranker scores them (two-stage retrieval).

        Args:
            enc_client: the encoded client (a profile is encoded on the fly).
            enc_items: the encoded catalogue.
            item_idx: candidate catalogue positions (normally the eligible ones).
            k: how many to return.
            reference_date: day against which waiting times are measured (default: the featurizer's).

        Returns:
            Indices, scores and contributions of the best ``min(k, len(item_idx))`` candidates.
        """
        enc = self._encoded(enc_client)
        idx = np.asarray(item_idx, dtype=np.int64).reshape(-1)
        if self.first_stage_k > 0 and idx.size > self.first_stage_k:
            idx = self.first_stage(enc, enc_items, idx, self.first_stage_k)
        n_feat = len(self.feature_names)
        if idx.size == 0 or k <= 0:
            return RankResult(
                indices=np.zeros(0, dtype=np.int64),
                scores=np.zeros(0, dtype=np.float64),
                contributions=np.zeros((0, n_feat + 1), dtype=np.float64),
                n_scored=int(idx.size),
                feature_names=self.feature_names,
            )
        X = self.features(enc, enc_items, idx, reference_date)
        scores = self.score_rows(X)
        top = np.argsort(-scores, kind="stable")[:k]
        contributions, outcomes = self.explain_rows(X[top], scores[top])
        return RankResult(
            indices=idx[top],
            scores=scores[top],
            contributions=contributions,
            n_scored=int(idx.size),
            feature_names=self.feature_names,
            outcomes=outcomes,
        )

    def rank_groups(
        self,
        enc_client: EncodedClients | ClientProfile,
        enc_items: EncodedItems,
        groups: Sequence[npt.ArrayLike],
        k: int,
        reference_date: date | None = None,
    ) -> list[RankResult]:
        """:meth:`rank` for several candidate lists of one client (e.g. one per kind) with one ranker call.

        Each group goes through the first stage on its own; the survivors of all groups are featurized and
        scored together, and contributions are computed once for all returned items (each LightGBM call has
        a fixed cost, so three calls per request cost more than one).

        Returns:
            One result per group, equal to ``rank`` on that group.
        """
        enc = self._encoded(enc_client)
        kept: list[npt.NDArray[np.int64]] = []
        for group in groups:
            idx = np.asarray(group, dtype=np.int64).reshape(-1)
            if self.first_stage_k > 0 and idx.size > self.first_stage_k:
                idx = self.first_stage(enc, enc_items, idx, self.first_stage_k)
            kept.append(idx)
        sizes = [i.size for i in kept]
        all_idx = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        n_feat = len(self.feature_names)
        if all_idx.size == 0 or k <= 0:
            X = np.zeros((0, n_feat), dtype=np.float32)
            scores = np.zeros(0, dtype=np.float64)
        else:
            X = self.features(enc, enc_items, all_idx, reference_date)
            scores = self.score_rows(X)
        bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        tops = [
            bounds[g] + np.argsort(-scores[bounds[g] : bounds[g + 1]], kind="stable")[: max(k, 0)]
            for g in range(len(kept))
        ]
        rows = np.concatenate(tops) if tops else np.zeros(0, dtype=np.int64)
        contrib, outcomes = self.explain_rows(X[rows], scores[rows])
        out: list[RankResult] = []
        start = 0
        for g, top in enumerate(tops):
            end = start + top.size
            out.append(
                RankResult(
                    indices=all_idx[top],
                    scores=scores[top],
                    contributions=contrib[start:end],
                    n_scored=sizes[g],
                    feature_names=self.feature_names,
                    outcomes=None if outcomes is None else {key: v[start:end] for key, v in outcomes.items()},
                )
            )
            start = end
        return out

    def outcome_reference(self, kind: str) -> dict[str, float] | None:
        """Mean outcome estimates of one kind over the training rows (the yardstick of outcome reasons)."""
        reference: Mapping[str, Sequence[float]] | None = getattr(self.ranker, "reference_", None)
        if not reference or kind not in KINDS:
            return None
        k = KINDS.index(kind)
        return {key: float(values[k]) for key, values in reference.items() if len(values) > k}

    def _encoded(self, client: EncodedClients | ClientProfile) -> EncodedClients:
        return self.featurizer.encode_client(client) if isinstance(client, ClientProfile) else client

    def score_records(
        self,
        clients: Sequence[ClientProfile],
        opportunities: Sequence[Opportunity],
        client_idx: npt.ArrayLike,
        opp_idx: npt.ArrayLike,
        reference_dates: Sequence[date | None] | None = None,
    ) -> npt.NDArray[np.float64]:
        """Scores of pairs ``(clients[client_idx[i]], opportunities[opp_idx[i]])``, in pair order.

        Uses the serving path (one encoded catalogue, one encoded client at a time), so batch scoring and
        the service give identical numbers.
        """
        return self.predict_records(clients, opportunities, client_idx, opp_idx, reference_dates)["score"]

    def predict_records(
        self,
        clients: Sequence[ClientProfile],
        opportunities: Sequence[Opportunity],
        client_idx: npt.ArrayLike,
        opp_idx: npt.ArrayLike,
        reference_dates: Sequence[date | None] | None = None,
    ) -> dict[str, npt.NDArray[np.float64]]:
        """:meth:`score_records` plus ``p_accept`` and ``expected_outcome`` per pair (NaN without outcome models)."""
        ci = np.asarray(client_idx, dtype=np.int64).reshape(-1)
        oi = np.asarray(opp_idx, dtype=np.int64).reshape(-1)
        if ci.shape != oi.shape:
            raise ValueError("client_idx and opp_idx differ in length")
        out = np.zeros(ci.size, dtype=np.float64)
        extra = {key: np.full(ci.size, np.nan) for key in PREDICTION_EXTRAS}
        if ci.size == 0:
            return {"score": out, **extra}
        items = self.featurizer.encode_items(opportunities)
        order = np.argsort(ci, kind="stable")
        sorted_ci = ci[order]
        starts = np.flatnonzero(np.r_[True, sorted_ci[1:] != sorted_ci[:-1]])
        ends = np.r_[starts[1:], sorted_ci.size]
        for start, end in zip(starts, ends, strict=True):
            rows = order[start:end]
            c = int(sorted_ci[start])
            ref = reference_dates[c] if reference_dates is not None else None
            X = self.features(self.encode_client(clients[c]), items, oi[rows], ref)
            out[rows] = self.score_rows(X)
            outcomes = self.outcome_rows(X)
            if outcomes is not None:
                for key in PREDICTION_EXTRAS:
                    extra[key][rows] = outcomes[key]
        return {"score": out, **extra}


def _forest_ranker(ranker: Ranker) -> LightGBMRanker | None:
    """The LightGBM ranker whose trees score: the ranker itself, or the outcome-aware ranker's acceptance model."""
    inner = getattr(ranker, "acceptance_", None)
    candidate = ranker if inner is None else inner
    return candidate if isinstance(candidate, LightGBMRanker) else None


def compile_trees(model: PolkuModel) -> TreeEngine | None:
    """Compile the model's trees for this platform (``models.compiled``); the model scores with them from now on.

    Takes seconds. Scores stay equal to the booster's within ``models.compiled.TOLERANCE``, and
    :func:`save_local` and :func:`log_polku_model` ship the library with the model.

    Returns:
        The new tree engine, or None when the model has no LightGBM trees (nothing to compile).

    Raises:
        models.compiled.CompileError: lleaves or a C compiler is missing, or the compiled trees differ.
    """
    forest = _forest_ranker(model.ranker)
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


def build_fallback_model(featurizer: PairFeaturizer, *, name: str = "points-baseline") -> PolkuModel:
    """The Job Market Finland style points model served when no champion can be loaded.

    Args:
        featurizer: a featurizer (fitted or not; unfitted uses the acceptance prior).
        name: model name reported to callers.
    """
    names = [str(n) for n in featurizer.get_feature_names_out()]
    ranker = PointsRanker().bind(names)
    meta = {"name": name, "version": "builtin", "ranker": ranker.name, "fallback": True}
    return PolkuModel(featurizer, ranker, meta)


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


def predict_frame(model: PolkuModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Score a frame with ``client_json`` and ``opportunity_json`` columns (and optional ``reference_date``).

    Returns:
        A frame with ``score``, ``p_accept`` and ``expected_outcome`` per input row, in input order.

    Raises:
        ValueError: a column is missing or a row does not hold a valid record (the message names the row and
            column, never the submitted values).
    """
    import pandas as pd
    from pydantic import ValidationError

    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"model input: missing column(s) {', '.join(missing)}")
    n = len(frame)
    if n == 0:
        return pd.DataFrame({name: np.zeros(0, dtype=np.float64) for name in ("score", *PREDICTION_EXTRAS)})
    client_codes, client_json = pd.factorize(frame["client_json"].astype(str), sort=False)
    opp_codes, opp_json = pd.factorize(frame["opportunity_json"].astype(str), sort=False)
    clients: list[ClientProfile] = []
    for i, text in enumerate(client_json):
        try:
            clients.append(ClientProfile.model_validate_json(text))
        except ValidationError as exc:
            row = int(np.flatnonzero(client_codes == i)[0])
            raise ValueError(
                f"model input row {row}: client_json is not a valid client ({exc.error_count()} errors)"
            ) from None
    opportunities: list[Opportunity] = []
    for i, text in enumerate(opp_json):
        try:
            opportunities.append(Opportunity.model_validate_json(text))
        except ValidationError as exc:
            row = int(np.flatnonzero(opp_codes == i)[0])
            raise ValueError(
                f"model input row {row}: opportunity_json is not a valid opportunity ({exc.error_count()} errors)"
            ) from None
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
    return pd.DataFrame(model.predict_records(clients, opportunities, ci, np.asarray(opp_codes), ref_per_client))


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
