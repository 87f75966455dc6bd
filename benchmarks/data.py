"""Benchmark fixtures: a world, a trained model, scaled catalogues and client stores, prepared data directories.

Everything is built lazily and cached for the run, so sections stay independent (each asks for what it
needs; a failure to build one fixture fails only the sections that need it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.records import ClientProfile, Opportunity

if TYPE_CHECKING:
    from models.package import PolkuModel
    from training.world import World

logger = logging.getLogger(__name__)

JWT_SECRET = "benchmark-secret-0123456789abcdef-0123456789abcdef"  # noqa: S105 - local benchmark only
DEFAULT_REFERENCE = date(2025, 9, 1)


@dataclass(frozen=True)
class Sizes:
    """Sizes of one benchmark run (full or smoke)."""

    world_clients: int = 3000
    catalogues: tuple[int, ...] = (1_000, 10_000, 50_000)
    inprocess_requests: int = 300
    inprocess_seconds: float = 10.0
    http_requests: int = 600
    http_seconds: float = 15.0
    concurrency: tuple[int, ...] = (1, 8)
    model_repeats: int = 300
    model_rows: tuple[int, ...] = (1, 300, 900)
    """Rows per model-time measurement (one client's candidates after the first stage: up to 3 kinds x 300)."""
    reference_trees: int = 300
    """Trees of the fixed-size reference ranker in the model-time section (0 = skip it)."""
    candidate_stores: tuple[int, ...] = (10_000, 100_000)
    candidate_requests: int = 50
    candidate_seconds: float = 30.0
    train_rows: tuple[int, ...] = (100_000, 1_000_000)
    startup_catalogue: int = 50_000
    rss_requests: int = 10_000
    rss_seconds: float = 60.0
    quality_clients: int = 3000
    store_clients: int = 0
    """Clients stored next to the suggestion catalogues (smoke: the candidate store, so one server serves all)."""
    candidate_catalogue: int = 0
    """Catalogue size of the candidate stores (0 = the world's own catalogue)."""

    @classmethod
    def smoke(cls) -> Sizes:
        """Tiny sizes so the whole run takes well under a minute."""
        return cls(
            world_clients=300,
            catalogues=(200,),
            inprocess_requests=20,
            inprocess_seconds=5.0,
            http_requests=30,
            http_seconds=5.0,
            concurrency=(1, 4),
            model_repeats=20,
            model_rows=(1, 200),
            reference_trees=0,
            candidate_stores=(200,),
            candidate_requests=5,
            candidate_seconds=5.0,
            train_rows=(5_000,),
            startup_catalogue=200,
            rss_requests=50,
            rss_seconds=10.0,
            quality_clients=300,
            store_clients=200,
            candidate_catalogue=200,
        )


def clone_opportunities(base: Sequence[Opportunity], n: int, seed: int = 11) -> list[Opportunity]:
    """A catalogue of ``n`` items: the originals, then perturbed clones with new ids (round-robin over base).

    Clones keep the original's content but move to another municipality of the same centre and get other
    seat counts, so eligibility and features differ between copies.
    """
    rng = np.random.default_rng(seed)
    out = list(base[:n])
    munis: dict[str, list[str]] = {}
    for o in base:
        munis.setdefault(o.centre, [])
        if o.municipality not in munis[o.centre]:
            munis[o.centre].append(o.municipality)
    j = 0
    while len(out) < n:
        o = base[j % len(base)]
        seats = int(rng.integers(1, 30))
        taken = int(rng.integers(0, seats + 1)) if o.seats_taken else 0
        pool = munis[o.centre]
        out.append(
            o.model_copy(
                update={
                    "opportunity_id": f"{o.opportunity_id[:50]}-x{j:06d}",
                    "municipality": pool[int(rng.integers(0, len(pool)))],
                    "seats": seats,
                    "seats_taken": min(taken, seats - 1) if seats > 1 else 0,
                }
            )
        )
        j += 1
    return out


def clone_clients(base: Sequence[ClientProfile], n: int, seed: int = 13) -> list[ClientProfile]:
    """``n`` clients: the originals, then clones with new ids and re-drawn ages and consents."""
    rng = np.random.default_rng(seed)
    out = list(base[:n])
    j = 0
    while len(out) < n:
        c = base[j % len(base)]
        share = bool(rng.random() < 0.7)
        consent = c.consent.model_copy(update={"matching": True, "share_with_coordinators": share})
        out.append(
            c.model_copy(
                update={
                    "client_id": f"{c.client_id[:50]}-x{j:07d}",
                    "age": int(np.clip(c.age + rng.integers(-3, 4), 18, 64)),
                    "consent": consent,
                }
            )
        )
        j += 1
    return out


def _acceptance(world: World) -> dict[str, tuple[int, int]]:
    h = world.history
    if h.empty:
        return {}
    g = h.groupby("opportunity_id")["accepted"].agg(["sum", "count"])
    return {str(k): (int(r["sum"]), int(r["count"])) for k, r in g.iterrows()}


def train_bench_model(world: World) -> tuple[PolkuModel, dict[str, Any]]:
    """The model the service serves in the benchmark: the real training pipeline's LightGBM ranker.

    Falls back to a LightGBM ranker fitted on truth-graded eligible pairs when the training pipeline is not
    usable (the benchmark measures speed; the quality section reads the real train run).
    """
    from models.package import PolkuModel

    start = time.perf_counter()
    try:
        from training.config import TrainConfig
        from training.datasets import build_training_data
        from training.train import build_models, fit_ranker

        cfg = TrainConfig()
        data = build_training_data(world, cfg)
        fit = fit_ranker(data, cfg)
        model = build_models(fit.data, fit.ranker, cfg)["lightgbm"]
        source = "training.train.fit_ranker on the bench world"
    except Exception as exc:  # noqa: BLE001 - fall back to a self-made ranker
        logger.warning("training pipeline unusable (%s); fitting a ranker on truth labels", exc)
        model = _fallback_model(world)
        source = f"fallback ranker on truth labels ({type(exc).__name__})"
    model.metadata.update({"version": "bench", "registry_version": "bench", "alias": "champion"})
    trained = time.perf_counter()
    engine, compile_error = _compile(model)
    info = {
        "source": source,
        "ranker": model.metadata["ranker"],
        "trees": model.tree_count(),
        "first_stage_k": model.first_stage_k,
        "seconds": round(trained - start, 2),
        "tree_engine": None if engine is None else engine.name,
        "tree_engine_detail": compile_error or (None if engine is None else engine.detail),
        "compile_seconds": round(time.perf_counter() - trained, 2),
    }
    _ = PolkuModel  # imported for typing at run time
    return model, info


def _compile(model: PolkuModel) -> tuple[Any, str | None]:
    """Compile the model's trees as registration does (the served model ships them); the error if it cannot."""
    from models.compiled import CompileError
    from models.packaging import compile_trees

    try:
        return compile_trees(model), None
    except CompileError as exc:
        logger.warning("benchmark model served without compiled trees: %s", exc)
        return model.trees, str(exc)


def _fallback_model(world: World, rounds: int = 150, n_clients: int = 800) -> PolkuModel:
    from features.eligibility import EligibilityEvaluator
    from features.pairs import PairBatch, PairFeaturizer
    from models.package import PolkuModel
    from models.rankers import LightGBMRanker

    opps = world.opportunities
    feat = PairFeaturizer().fit(
        PairBatch([], opps, np.zeros(0, np.int64), np.zeros(0, np.int64)), acceptance=_acceptance(world)
    )
    items = feat.encode_items(opps)
    ev = EligibilityEvaluator(opps)
    xs, ys, gs = [], [], []
    for qi, c in enumerate(world.clients[:n_clients]):
        ref = date(world.cohort_of.get(c.client_id, 2025), 9, 1)
        idx = ev.evaluate(c, ref).eligible_indices
        if idx.size < 2:
            continue
        xs.append(feat.transform_encoded(feat.encode_client(c), items, idx, ref))
        ys.append(world.truth.relevance([c.client_id] * idx.size, [opps[i].opportunity_id for i in idx]))
        gs.append(np.full(idx.size, qi))
    names = [str(n) for n in feat.get_feature_names_out()]
    ranker = LightGBMRanker(num_boost_round=rounds, early_stopping_rounds=rounds).fit(
        np.vstack(xs), np.concatenate(ys), np.concatenate(gs), feature_names=names
    )
    return PolkuModel(feat, ranker, {"name": "polku-ranker", "version": "bench"})


@dataclass
class DataDir:
    """A prepared data directory the service can start on (SQLite store + model cache)."""

    path: Path
    n_opportunities: int
    n_clients: int
    seconds: float

    @property
    def database_url(self) -> str:
        """SQLite URL of the store."""
        return f"sqlite:///{self.path / 'polku.db'}"

    def env(self) -> dict[str, str]:
        """Environment of a service process using this directory (registry off: the model comes from the cache)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLKU_")}
        env.update(
            {
                "POLKU_DATA_DIR": str(self.path),
                "POLKU_DATABASE_URL": self.database_url,
                "POLKU_REGISTRY_ENABLED": "false",
                "POLKU_JWT_SECRET": JWT_SECRET,
                "POLKU_ENV": "dev",
                "MLFLOW_TRACKING_URI": f"sqlite:///{self.path / 'mlflow.db'}",
                # The benchmarks measure the engine at a fixed concurrency, not admission: nothing is shed.
                "POLKU_MAX_IN_FLIGHT": "1000",
                "POLKU_OVERLOAD_AGE_MS": "600000",
            }
        )
        return env

    def settings(self) -> Any:
        """Service settings for an in-process app on this directory."""
        from pydantic import SecretStr

        from service.settings import Settings

        return Settings(
            data_dir=self.path,
            database_url=self.database_url,
            registry_enabled=False,
            jwt_secret=SecretStr(JWT_SECRET),
        )


@dataclass
class Fixtures:
    """Lazily built, cached inputs shared by the sections."""

    sizes: Sizes
    workdir: Path
    _world: Any = None
    _model: Any = None
    model_info: dict[str, Any] = field(default_factory=dict)
    _catalogues: dict[int, list[Opportunity]] = field(default_factory=dict)
    _dirs: dict[tuple[int, int], DataDir] = field(default_factory=dict)
    world_seconds: float = 0.0
    _server: Any = None
    _server_key: tuple[int, int] | None = None
    _server_cm: Any = None

    @property
    def world(self) -> World:
        """The benchmark world (generated once)."""
        if self._world is None:
            from training.world import generate_world

            start = time.perf_counter()
            self._world = generate_world(n_clients=self.sizes.world_clients, seed=7)
            self.world_seconds = round(time.perf_counter() - start, 2)
            logger.info(
                "world: %d clients, %d items in %.1fs",
                len(self._world.clients),
                len(self._world.opportunities),
                self.world_seconds,
            )
        return self._world

    @property
    def model(self) -> PolkuModel:
        """The served model (trained once)."""
        if self._model is None:
            self._model, self.model_info = train_bench_model(self.world)
            logger.info("model: %s", self.model_info)
        return self._model

    def catalogue(self, n: int) -> list[Opportunity]:
        """A catalogue of ``n`` items built from the world's."""
        if n not in self._catalogues:
            self._catalogues[n] = clone_opportunities(self.world.opportunities, n)
        return self._catalogues[n]

    def query_clients(self, n: int = 200) -> list[ClientProfile]:
        """Clients to ask suggestions for (consenting to matching, latest cohort first)."""
        w = self.world
        latest = max(w.cohort_of.values()) if w.cohort_of else 2025
        consenting = [c for c in w.clients if c.consent.matching]
        pool = [c for c in consenting if w.cohort_of.get(c.client_id) == latest] or consenting
        return pool[:n]

    def reference_date(self) -> date:
        """Reference date of the latest cohort (intakes lie ahead of it)."""
        w = self.world
        return date(max(w.cohort_of.values()), 9, 1) if w.cohort_of else DEFAULT_REFERENCE

    def data_dir(self, n_opportunities: int, n_clients: int = 0) -> DataDir:
        """A data directory with ``n_opportunities`` items, ``n_clients`` stored clients and the model cache."""
        key = (n_opportunities, n_clients)
        if key not in self._dirs:
            self._dirs[key] = self._prepare(n_opportunities, n_clients)
        return self._dirs[key]

    def _prepare(self, n_opportunities: int, n_clients: int) -> DataDir:
        from models.packaging import save_local
        from service.storage import repositories as repo
        from service.storage.db import make_engine, make_session_factory, migrate

        start = time.perf_counter()
        path = self.workdir / f"data-{n_opportunities}-{n_clients}"
        path.mkdir(parents=True, exist_ok=True)
        dd = DataDir(path, n_opportunities, n_clients, 0.0)
        engine = make_engine(dd.database_url)
        migrate(engine)
        factory = make_session_factory(engine)
        catalogue = self.catalogue(n_opportunities)
        clients = clone_clients(self.world.clients, n_clients) if n_clients else []
        with factory() as session:
            for i in range(0, len(catalogue), 5000):
                repo.upsert_opportunities(session, catalogue[i : i + 5000])
            for i in range(0, len(clients), 5000):
                repo.upsert_clients(session, clients[i : i + 5000])
            session.commit()
        engine.dispose()
        save_local(self.model, path / "model-cache")
        dd.seconds = round(time.perf_counter() - start, 2)
        logger.info("data dir %s prepared in %.1fs", path.name, dd.seconds)
        return dd

    def server(self, dd: DataDir) -> Any:
        """A uvicorn server on ``dd`` (kept running for later sections; one at a time)."""
        from benchmarks.httpload import rss_mb, uvicorn_server

        key = (dd.n_opportunities, dd.n_clients)
        if self._server is not None and self._server_key == key and self._server.proc.poll() is None:
            return self._server
        self.close_server()
        cm = uvicorn_server(dd.env(), self.workdir / "logs")
        server = cm.__enter__()
        server.rss_at_start = rss_mb(server.proc.pid)
        server.requests_served = 0
        self._server, self._server_key, self._server_cm = server, key, cm
        logger.info("server on %s ready in %.1fs", dd.path.name, server.started_s)
        return server

    def close_server(self) -> None:
        """Stop the running server, if any."""
        if self._server_cm is not None:
            self._server_cm.__exit__(None, None, None)
        self._server = self._server_key = self._server_cm = None
