"""ModelHolder: loads the champion, falls back to the local cache or the points model, swaps atomically.

A request takes one :class:`Snapshot` (model + catalogue + encoded items) at its start and keeps it until it
answers, so a reload or a catalogue change never mixes two models or two catalogues in one response. New
snapshots are built completely before one reference is replaced.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar, cast

import numpy as np

from features.eligibility import EligibilityEvaluator
from features.pairs import EncodedItems, PairFeaturizer
from features.records import ClientProfile, Constraints, Opportunity
from models.package import ModelLoadError, PolkuModel, build_fallback_model
from models.packaging import load_local, save_local
from service.settings import Settings

logger = logging.getLogger(__name__)

Source = Literal["registry", "cache", "fallback"]
T = TypeVar("T")
RegistryLoader = Callable[[Settings], tuple[PolkuModel, str | None]]


class ReloadRefused(Exception):
    """The new model could not be loaded or failed its checks; the old one keeps serving."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LoadedModel:
    """A model in service and where it came from, with the caches that live as long as it does."""

    model: PolkuModel
    name: str
    version: str | None
    alias: str | None
    source: Source
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _caches: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    _caches_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def cached(self, key: Any, build: Callable[[], T], *, valid: Callable[[T], bool] | None = None) -> T:
        """A value built once per loaded model and ``key`` (thread-safe); rebuilt when ``valid`` says it is stale.

        Such values outlive catalogue refreshes (the snapshot's own helpers do not): e.g. a centre's encoded
        candidate pool, keyed by centre, valid while its profiles are unchanged.
        """
        with self._caches_lock:
            hit = self._caches.get(key)
            if hit is not None and (valid is None or valid(hit)):
                return cast(T, hit)
        value = build()
        with self._caches_lock:
            self._caches[key] = value
        return value

    @property
    def fallback(self) -> bool:
        """True when the points baseline serves."""
        return self.source == "fallback" or self.model.is_fallback

    @property
    def degraded(self) -> bool:
        """True unless the registry champion serves."""
        return self.source != "registry"


@dataclass(frozen=True)
class Catalogue:
    """The stored opportunities in id order with their eligibility evaluator."""

    opportunities: tuple[Opportunity, ...]
    position: dict[str, int]
    evaluator: EligibilityEvaluator
    fingerprint: tuple[int, str]

    @classmethod
    def build(cls, opportunities: list[Opportunity], fingerprint: tuple[int, str]) -> Catalogue:
        """Index a catalogue."""
        ops = tuple(opportunities)
        return cls(ops, {o.opportunity_id: i for i, o in enumerate(ops)}, EligibilityEvaluator(ops), fingerprint)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """What one request scores with: a model, a catalogue, and the catalogue encoded for that model.

    Derived per-snapshot helpers (remedy index, path planner) are built once on first use.
    """

    loaded: LoadedModel
    catalogue: Catalogue
    items: EncodedItems
    _derived: dict[str, Any] = field(default_factory=dict, repr=False)
    _derived_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def derived(self, key: str, build: Callable[[], T]) -> T:
        """A helper built once per snapshot (thread-safe)."""
        value = self._derived.get(key)
        if value is None:
            with self._derived_lock:
                value = self._derived.get(key)
                if value is None:
                    value = build()
                    self._derived[key] = value
        return cast(T, value)


def load_from_registry(settings: Settings) -> tuple[PolkuModel, str | None]:
    """Load ``models:/<name>@<alias>``, pinned to the version the alias points at.

    Returns:
        The model and its registry version.

    Raises:
        ModelLoadError: the registry is unreachable, the alias is unset, or the model is unusable.
    """
    # Fail fast instead of MLflow's default minutes of retries when the tracking server is down.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.packaging import load_polku_model

    try:
        client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        mv = client.get_model_version_by_alias(settings.model_name, settings.model_alias)
    except MlflowException as exc:
        raise ModelLoadError(f"{settings.model_uri}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    except Exception as exc:  # noqa: BLE001 - network/DB errors of the tracking store
        raise ModelLoadError(f"{settings.model_uri}: registry unreachable ({type(exc).__name__})") from exc
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    model = load_polku_model(f"models:/{settings.model_name}/{mv.version}")
    return model, str(mv.version)


def _probe_client(catalogue: Catalogue) -> ClientProfile:
    first = catalogue.opportunities[0]
    return ClientProfile(
        client_id="probe-client",
        centre=first.centre,
        age=30,
        constraints=Constraints(municipality=first.municipality),
    )


def check_model(model: PolkuModel, catalogue: Catalogue, items: EncodedItems) -> None:
    """Smoke test a model on the catalogue: finite scores for a synthetic client.

    Raises:
        ReloadRefused: the model raises or yields non-finite scores.
    """
    if not catalogue.opportunities:
        return
    idx = np.arange(min(len(catalogue.opportunities), 50))
    try:
        result = model.rank(_probe_client(catalogue), items, idx, k=5, reference_date=date.today())
    except Exception as exc:  # noqa: BLE001 - any failure means the model cannot serve
        raise ReloadRefused(f"model failed its smoke test ({type(exc).__name__})") from exc
    if not all(math.isfinite(float(s)) for s in result.scores):
        raise ReloadRefused("model produced non-finite scores")


class ModelHolder:
    """Owns the model in service and the encoded catalogue; one reference is swapped on change.

    Args:
        settings: model name/alias, tracking URI and cache directory.
        registry_loader: loads the registry model (injectable for tests; default :func:`load_from_registry`).
    """

    def __init__(self, settings: Settings, *, registry_loader: RegistryLoader | None = None) -> None:
        self.settings = settings
        self._registry_loader = registry_loader or load_from_registry
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    # -- loading ----------------------------------------------------------------------------------------------
    def _load_initial(self) -> LoadedModel:
        s = self.settings
        if s.registry_enabled:
            try:
                model, version = self._registry_loader(s)
            except (ModelLoadError, ReloadRefused) as exc:
                self.last_error = str(exc)
                logger.warning("champion unavailable (%s); trying the local cache", type(exc).__name__)
            else:
                self._save_cache(model, version)
                return LoadedModel(model, s.model_name, version, s.model_alias, "registry")
        try:
            model = load_local(s.model_cache_dir)
        except ModelLoadError as exc:
            self.last_error = (self.last_error or "") + f"; cache: {exc}"
            logger.warning("no usable local model cache; serving the points fallback")
            fallback = build_fallback_model(PairFeaturizer())
            return LoadedModel(fallback, fallback.name, fallback.version, None, "fallback")
        meta = model.metadata
        version = str(meta.get("registry_version") or model.version)
        return LoadedModel(model, s.model_name, version, str(meta.get("alias") or s.model_alias), "cache")

    def _save_cache(self, model: PolkuModel, version: str | None) -> None:
        model.metadata["registry_version"] = version
        model.metadata["alias"] = self.settings.model_alias
        try:
            save_local(model, self.settings.model_cache_dir)
        except OSError as exc:
            logger.warning("could not refresh the local model cache (%s)", type(exc).__name__)

    def start(self, opportunities: list[Opportunity], fingerprint: tuple[int, str]) -> Snapshot:
        """Load the model (registry → cache → fallback) and encode the catalogue."""
        with self._lock:
            loaded = self._load_initial()
            catalogue = Catalogue.build(opportunities, fingerprint)
            self._snapshot = Snapshot(loaded, catalogue, loaded.model.encode_items(catalogue.opportunities))
            logger.info("serving %s v%s from %s", loaded.name, loaded.version, loaded.source)
            return self._snapshot

    def install(self, loaded: LoadedModel, opportunities: list[Opportunity], fingerprint: tuple[int, str]) -> None:
        """Serve a given model (tests and tools)."""
        with self._lock:
            catalogue = Catalogue.build(opportunities, fingerprint)
            self._snapshot = Snapshot(loaded, catalogue, loaded.model.encode_items(catalogue.opportunities))

    @property
    def ready(self) -> bool:
        """True once a model is loaded."""
        return self._snapshot is not None

    def current(self) -> Snapshot:
        """The snapshot in service (the caller keeps this reference for the whole request).

        Raises:
            RuntimeError: before :meth:`start`.
        """
        snap = self._snapshot
        if snap is None:
            raise RuntimeError("model not loaded")
        return snap

    def refresh_catalogue(self, fingerprint: tuple[int, str], load: Callable[[], list[Opportunity]]) -> Snapshot:
        """Rebuild the catalogue when its fingerprint changed; returns the (possibly new) snapshot."""
        snap = self.current()
        if snap.catalogue.fingerprint == fingerprint:
            return snap
        with self._lock:
            snap = self.current()
            if snap.catalogue.fingerprint == fingerprint:
                return snap
            catalogue = Catalogue.build(load(), fingerprint)
            new = Snapshot(snap.loaded, catalogue, snap.loaded.model.encode_items(catalogue.opportunities))
            self._snapshot = new
            logger.info("catalogue rebuilt: %d items", len(catalogue.opportunities))
            return new

    def reload(self) -> Snapshot:
        """Load the current champion, check it, then swap; the old model serves until the swap.

        Raises:
            ReloadRefused: registry unreachable, alias unset, model corrupt/incompatible, or smoke test failed.
        """
        s = self.settings
        with self._lock:
            old = self.current()
            try:
                model, version = self._registry_loader(s)
            except ModelLoadError as exc:
                raise ReloadRefused(str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - any loader failure refuses the reload
                raise ReloadRefused(f"model could not be loaded ({type(exc).__name__})") from exc
            try:
                items = model.encode_items(old.catalogue.opportunities)
            except Exception as exc:  # noqa: BLE001
                raise ReloadRefused(f"model cannot encode the catalogue ({type(exc).__name__})") from exc
            check_model(model, old.catalogue, items)
            loaded = LoadedModel(model, s.model_name, version, s.model_alias, "registry")
            self._snapshot = Snapshot(loaded, old.catalogue, items)
            self._save_cache(model, version)
            self.last_error = None
            logger.info("reloaded %s v%s", loaded.name, loaded.version)
            return self._snapshot
