"""Load test with a model swap: mixed traffic at a target rate while a new champion is trained and reloaded.

``python -m benchmarks.loadtest --duration 60 --rate 200`` (``make loadtest``):

1. prepares ``<POLKU_DATA_DIR>/loadtest`` once (a synthetic world, a champion trained with ``training.train``,
   the world loaded into a SQLite store) and reuses it on later runs;
2. starts the real service (uvicorn subprocess on a free loopback port);
3. sends suggestions (50 %), candidates (25 %) and feedback (25 %) open-loop at ``--rate`` requests/s;
4. at ``--swap-at`` of the run retrains in a subprocess (a new registered version, moved to ``@champion``) and
   calls ``POST /v1/admin/model:reload``; traffic continues until the reload answered and an "after" window ran;
5. prints p50/p95/p99 before, during and after the swap, and fails (exit 1) on any error, any ranking answer
   without ``model.version`` or with a version other than the old or new one, or any request started after
   the reload that was still answered by the old model.

The suite runs a 10-second version (``tests/test_load.py``) through :func:`run_load`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

logger = logging.getLogger("benchmarks.loadtest")

HOST = "127.0.0.1"
MODEL_NAME = "polku-ranker"
ALIAS = "champion"
RANKING_KINDS = ("suggestions", "candidates")


# ------------------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class Targets:
    """What the traffic asks about: stored clients with matching consent and stored opportunities (with centres)."""

    clients: list[tuple[str, str]]
    opportunities: list[tuple[str, str]]


def read_targets(database_url: str) -> Targets:
    """Clients (consenting to matching) and opportunities of the store, each with its centre."""
    from sqlalchemy import select

    from service.storage.db import make_engine, make_session_factory
    from service.storage.tables import ClientRow, OpportunityRow

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            clients = s.execute(
                select(ClientRow.client_id, ClientRow.centre).where(ClientRow.consent_matching.is_(True))
            ).all()
            opps = s.execute(select(OpportunityRow.opportunity_id, OpportunityRow.centre)).all()
    finally:
        engine.dispose()
    if not clients or not opps:
        raise RuntimeError("the store holds no consenting clients or no opportunities")
    return Targets([(str(c), str(k)) for c, k in clients], [(str(o), str(k)) for o, k in opps])


class Tokens:
    """Tokens per (role, centre), minted once with the server's secret."""

    def __init__(self, secret: str) -> None:
        from service.auth import mint_token
        from service.settings import Settings

        self._settings = Settings(jwt_secret=secret, registry_enabled=False)  # type: ignore[arg-type]
        self._mint = mint_token
        self._cache: dict[tuple[str, str | None], dict[str, str]] = {}

    def header(self, role: str, centre: str | None) -> dict[str, str]:
        """``Authorization`` header for a role and centre (valid for an hour)."""
        key = (role, centre)
        if key not in self._cache:
            token = self._mint(self._settings, role=role, centre=centre, ttl_s=3600)
            self._cache[key] = {"Authorization": f"Bearer {token}"}
        return self._cache[key]


# ------------------------------------------------------------------------------------------------ samples
@dataclass
class Sample:
    """One request: kind, start (s since the run began), latency (s), status (0 = transport error), version."""

    kind: str
    start: float
    latency: float
    status: int
    version: str | None = None
    has_model: bool = False
    error: str | None = None


@dataclass
class LoadReport:
    """Samples of a run and the swap timeline (seconds since the run began)."""

    samples: list[Sample] = field(default_factory=list)
    swap_started: float | None = None
    reload_done: float | None = None
    reload_status: int | None = None
    old_version: str | None = None
    new_version: str | None = None
    wall_s: float = 0.0

    def phase_of(self, s: Sample) -> str:
        """``before`` the swap began, ``during`` retrain and reload, ``after`` the reload answered."""
        if self.swap_started is None or s.start < self.swap_started:
            return "before"
        if self.reload_done is None or s.start < self.reload_done:
            return "during"
        return "after"

    def errors(self) -> list[Sample]:
        """Transport failures and non-2xx answers."""
        return [s for s in self.samples if not 200 <= s.status < 300]

    def version_problems(self) -> list[str]:
        """Ranking answers without a version, with a foreign version, or served by the old model after the swap."""
        allowed = {self.old_version, self.new_version}
        problems: list[str] = []
        for s in self.samples:
            if s.kind not in RANKING_KINDS or not 200 <= s.status < 300:
                continue
            if not s.has_model or not s.version:
                problems.append(f"{s.kind} at {s.start:.2f}s: no model.version")
            elif s.version not in allowed:
                problems.append(f"{s.kind} at {s.start:.2f}s: version {s.version} not in {sorted(map(str, allowed))}")
            elif (
                self.reload_done is not None
                and s.start >= self.reload_done
                and s.version == self.old_version
                and self.old_version != self.new_version
            ):
                problems.append(f"{s.kind} at {s.start:.2f}s: old model after the reload answered")
        return problems

    def table(self) -> list[dict[str, Any]]:
        """Per phase: requests, rate, p50/p95/p99/max latency (ms), errors, versions seen."""
        rows: list[dict[str, Any]] = []
        bounds = {
            "before": (0.0, self.swap_started if self.swap_started is not None else self.wall_s),
            "during": (self.swap_started or 0.0, self.reload_done or self.wall_s),
            "after": (self.reload_done or self.wall_s, self.wall_s),
        }
        for phase in ("before", "during", "after"):
            group = [s for s in self.samples if self.phase_of(s) == phase]
            lat = np.array([s.latency for s in group], dtype=float) * 1000.0
            lo, hi = bounds[phase]
            span = max(hi - lo, 1e-9)
            versions = sorted({s.version for s in group if s.version})
            rows.append(
                {
                    "phase": phase,
                    "requests": len(group),
                    "rps": len(group) / span if group else 0.0,
                    "p50_ms": float(np.percentile(lat, 50)) if group else float("nan"),
                    "p95_ms": float(np.percentile(lat, 95)) if group else float("nan"),
                    "p99_ms": float(np.percentile(lat, 99)) if group else float("nan"),
                    "max_ms": float(lat.max()) if group else float("nan"),
                    "errors": sum(1 for s in group if not 200 <= s.status < 300),
                    "versions": ",".join(versions),
                }
            )
        return rows

    def render(self) -> str:
        """The p99 table around the swap as Markdown."""
        head = "| phase | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | model versions |"
        lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in self.table():
            lines.append(
                f"| {r['phase']} | {r['requests']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['errors']} | {r['versions']} |"
            )
        swap = (
            f"swap: retrain+promote from {self.swap_started:.1f}s, reload answered {self.reload_status} at "
            f"{self.reload_done:.1f}s; v{self.old_version} -> v{self.new_version}"
            if self.swap_started is not None and self.reload_done is not None
            else "swap: not completed"
        )
        return "\n".join([*lines, swap])


# --------------------------------------------------------------------------------------------- generator
def _request_for(
    kind: str, targets: Targets, tokens: Tokens, rng: random.Random
) -> tuple[str, str, Any, dict[str, str]]:
    if kind == "suggestions":
        cid, centre = rng.choice(targets.clients)
        body: dict[str, Any] = {"client_id": cid, "k": 5, "lang": rng.choice(["fi", "sv", "en"])}
        return "POST", "/v1/suggestions", body, tokens.header("counsellor", centre)
    if kind == "candidates":
        oid, centre = rng.choice(targets.opportunities)
        return "POST", f"/v1/opportunities/{oid}/candidates", {"k": 20}, tokens.header("coordinator", centre)
    cid, centre = rng.choice(targets.clients)
    oid, _ = rng.choice(targets.opportunities)
    event = {
        "event_id": f"load-{uuid.uuid4().hex}",
        "type": "decision",
        "client_id": cid,
        "opportunity_id": oid,
        "decision": rng.choice(["accepted", "rejected"]),
        "occurred_at": "2025-09-02T10:00:00Z",
    }
    if event["decision"] == "rejected":
        event["reason_code"] = "timing"
    return "POST", "/v1/feedback", event, tokens.header("counsellor", centre)


async def _one(
    client: httpx.AsyncClient, kind: str, request: tuple[str, str, Any, dict[str, str]], t0: float
) -> Sample:
    method, path, body, headers = request
    start = time.perf_counter()
    try:
        r = await client.request(method, path, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return Sample(kind, start - t0, time.perf_counter() - start, 0, error=type(exc).__name__)
    latency = time.perf_counter() - start
    sample = Sample(kind, start - t0, latency, r.status_code)
    if kind in RANKING_KINDS and r.status_code == 200:
        model = r.json().get("model")
        sample.has_model = isinstance(model, dict)
        sample.version = str(model.get("version")) if isinstance(model, dict) and model.get("version") else None
    elif r.status_code >= 300:
        sample.error = r.text[:200]
    return sample


Swap = Callable[[httpx.AsyncClient], Awaitable[tuple[int, str | None]]]


async def run_load(
    base_url: str,
    targets: Targets,
    tokens: Tokens,
    *,
    duration_s: float,
    rate: float,
    swap: Swap | None,
    swap_at: float = 0.4,
    after_s: float | None = None,
    mix: Sequence[tuple[str, float]] = (("suggestions", 0.5), ("candidates", 0.25), ("feedback", 0.25)),
    seed: int = 0,
    max_in_flight: int = 64,
) -> LoadReport:
    """Send open-loop traffic at ``rate`` for ``duration_s`` and run ``swap`` at ``swap_at`` of the run.

    Args:
        base_url: server URL.
        targets: stored clients and opportunities to ask about.
        tokens: token source.
        duration_s: planned length; extended until ``after_s`` passed after the reload answered.
        rate: requests per second (arrivals are evenly spaced; requests overlap freely).
        swap: coroutine doing retrain/promotion and the reload; returns (reload status, new version).
        swap_at: fraction of ``duration_s`` at which the swap starts.
        after_s: minimum traffic after the reload answered (default 30 % of ``duration_s``).
        mix: request kinds and weights.
        seed: seed of the request mix.
        max_in_flight: concurrency cap (arrivals wait when reached, which shows up as latency).

    Returns:
        The samples and the swap timeline.
    """
    rng = random.Random(seed)  # noqa: S311 - traffic mix, not security
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    report = LoadReport()
    after = duration_s * 0.3 if after_s is None else after_s
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        report.old_version = await _served_version(client, tokens)
        gate = asyncio.Semaphore(max_in_flight)
        tasks: list[asyncio.Task[Sample]] = []
        swap_task: asyncio.Task[None] | None = None
        t0 = time.perf_counter()

        async def do_swap() -> None:
            assert swap is not None
            report.swap_started = time.perf_counter() - t0
            try:
                status, version = await swap(client)
            except Exception:  # the load goes on; the report shows the swap failed
                logger.exception("swap failed")
                status, version = 0, None
            report.reload_done = time.perf_counter() - t0
            report.reload_status = status
            report.new_version = version

        async def guarded(kind: str, req: tuple[str, str, Any, dict[str, str]]) -> Sample:
            async with gate:
                return await _one(client, kind, req, t0)

        i = 0
        while True:
            now = time.perf_counter() - t0
            if swap is not None and swap_task is None and now >= duration_s * swap_at:
                swap_task = asyncio.create_task(do_swap())
            swap_pending = swap_task is not None and not swap_task.done()
            end = duration_s if report.reload_done is None else max(duration_s, report.reload_done + after)
            if now >= end and not swap_pending and (swap is None or swap_task is not None):
                break
            due = i / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            kind = rng.choices(kinds, weights)[0]
            tasks.append(asyncio.create_task(guarded(kind, _request_for(kind, targets, tokens, rng))))
            i += 1
        if swap_task is not None:
            await swap_task
        report.samples = list(await asyncio.gather(*tasks))
        report.wall_s = time.perf_counter() - t0
        if report.new_version is None:
            report.new_version = report.old_version
    return report


async def _served_version(client: httpx.AsyncClient, tokens: Tokens) -> str | None:
    r = await client.get("/v1/model", headers=tokens.header("data_scientist", None))
    r.raise_for_status()
    version = r.json()["model"].get("version")
    return None if version is None else str(version)


async def reload(client: httpx.AsyncClient, tokens: Tokens) -> tuple[int, str | None]:
    """``POST /v1/admin/model:reload`` as an admin; returns the status and the version now served."""
    r = await client.post("/v1/admin/model:reload", headers=tokens.header("admin", None), timeout=300.0)
    version = r.json().get("model", {}).get("version") if r.status_code == 200 else None
    if r.status_code != 200:
        logger.error("reload answered %d: %s", r.status_code, r.text[:300])
    return r.status_code, None if version is None else str(version)


# ------------------------------------------------------------------------------------------------ server
def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_env(data_dir: Path, secret: str, **extra: str) -> dict[str, str]:
    """Environment of a service subprocess serving ``data_dir`` (store, registry, cache all under it)."""
    env = dict(os.environ)
    env.update(
        {
            "POLKU_DATA_DIR": str(data_dir),
            "POLKU_DATABASE_URL": f"sqlite:///{data_dir / 'polku.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{data_dir / 'mlflow.db'}",
            "POLKU_JWT_SECRET": secret,
            "GIT_PYTHON_REFRESH": "quiet",
            **extra,
        }
    )
    return env


@contextlib.contextmanager
def running_server(env: dict[str, str], log_path: Path, *, timeout_s: float = 180.0) -> Iterator[str]:
    """Start ``uvicorn service.app:create_app --factory`` on a free port; yield its URL once ``/readyz`` is 200.

    The process gets SIGTERM at the end (graceful shutdown) and is killed only if it does not exit.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host", HOST, "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "10"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode}: {log_path.read_text(errors='replace')[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {timeout_s}s")
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ----------------------------------------------------------------------------------------------- registry
def set_champion(tracking_uri: str, version: str) -> None:
    """Move ``@champion`` to ``version`` (the load test forces the swap; the promotion gate is training's job)."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(MODEL_NAME, ALIAS, version)


def champion_version(tracking_uri: str) -> str | None:
    """The version ``@champion`` points at, ``None`` when unset."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient(tracking_uri=tracking_uri).get_model_version_by_alias(MODEL_NAME, ALIAS).version)
    except MlflowException:
        return None


def train_version(world: Path, tracking_uri: str, seed: int) -> str:
    """Train with ``training.train`` (no gate) and return the registered version."""
    from training.config import TrainConfig
    from training.train import train

    result = train(world, config=TrainConfig(seed=seed), promote=False, tracking_uri=tracking_uri)
    if result.model_version is None:
        raise RuntimeError("training registered no model version")
    return str(result.model_version)


def prepare(data_dir: Path, *, clients: int, seed: int = 7) -> None:
    """World, champion and store under ``data_dir``; each step is skipped when already done."""
    from service.storage.db import make_engine, make_session_factory, migrate
    from service.world_io import load_world
    from training.world import generate_world

    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["POLKU_DATA_DIR"] = str(data_dir)
    tracking = f"sqlite:///{data_dir / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    world = data_dir / "world"
    if not (world / "manifest.json").exists():
        logger.info("building a world of %d clients in %s", clients, world)
        generate_world(n_clients=clients, seed=seed).save(world)
    if champion_version(tracking) is None:
        logger.info("training the first champion (training.train)")
        set_champion(tracking, train_version(world, tracking, seed))
    engine = make_engine(f"sqlite:///{data_dir / 'polku.db'}")
    migrate(engine)
    with make_session_factory(engine)() as session:
        report = load_world(session, world)
    engine.dispose()
    logger.info("store: %d clients, %d opportunities", report.clients, report.opportunities)


def retrain_swap(data_dir: Path, tokens: Tokens, *, seed: int, mode: str) -> Swap:
    """A swap that retrains in a subprocess (or re-registers the champion's model), promotes, then reloads."""

    async def swap(client: httpx.AsyncClient) -> tuple[int, str | None]:
        cmd = [sys.executable, "-m", "benchmarks.loadtest", "--retrain-only", "--data-dir", str(data_dir)]
        cmd += ["--seed", str(seed), "--swap-mode", mode]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            logger.error("retrain failed: %s", out.decode(errors="replace")[-2000:])
            return 0, None
        logger.info("retrain: %s", out.decode(errors="replace").strip().splitlines()[-1])
        return await reload(client, tokens)

    return swap


def retrain_only(data_dir: Path, *, seed: int, mode: str) -> str:
    """Register a new version (trained, or the champion's model again) and move ``@champion`` to it."""
    import mlflow

    tracking = f"sqlite:///{data_dir / 'mlflow.db'}"
    os.environ["POLKU_DATA_DIR"] = str(data_dir)
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    if mode == "train":
        version = train_version(data_dir / "world", tracking, seed)
    else:
        client = mlflow.MlflowClient(tracking_uri=tracking)
        current = client.get_model_version_by_alias(MODEL_NAME, ALIAS)
        created = client.create_model_version(
            MODEL_NAME, str(current.source), run_id=current.run_id, model_id=getattr(current, "model_id", None)
        )
        version = str(created.version)
    set_champion(tracking, version)
    return version


# --------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Prepare, serve, load, swap, report; exit 1 on any error or version problem."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="Planned seconds of traffic.")
    p.add_argument("--rate", type=float, default=200.0, help="Requests per second.")
    p.add_argument("--swap-at", type=float, default=0.3, help="Fraction of the run at which the retrain starts.")
    p.add_argument("--clients", type=int, default=1000, help="Clients in the load-test world (first run only).")
    p.add_argument("--data-dir", type=Path, default=None, help="Default: <POLKU_DATA_DIR or var>/loadtest.")
    p.add_argument("--swap-mode", choices=("train", "reregister"), default="train", help="How the new version is made.")
    p.add_argument("--seed", type=int, default=11, help="Seed of the retrain.")
    p.add_argument("--retrain-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "mlflow", "alembic", "training", "lightgbm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    base = Path(os.environ.get("POLKU_DATA_DIR", "var"))
    data_dir = (args.data_dir or base / "loadtest").resolve()
    if args.retrain_only:
        version = retrain_only(data_dir, seed=args.seed, mode=args.swap_mode)
        logger.info("registered and promoted %s v%s", MODEL_NAME, version)
        return 0
    prepare(data_dir, clients=args.clients)
    secret = secrets.token_urlsafe(48)
    tokens = Tokens(secret)
    targets = read_targets(f"sqlite:///{data_dir / 'polku.db'}")
    with running_server(server_env(data_dir, secret), data_dir / "loadtest-server.log") as url:
        swap = retrain_swap(data_dir, tokens, seed=args.seed, mode=args.swap_mode)
        report = asyncio.run(
            run_load(url, targets, tokens, duration_s=args.duration, rate=args.rate, swap=swap, swap_at=args.swap_at)
        )
    logger.info("\n%s", report.render())
    errors, problems = report.errors(), report.version_problems()
    logger.info("errors: %d; version problems: %d; reload: %s", len(errors), len(problems), report.reload_status)
    for s in errors[:10]:
        logger.error("error: %s at %.2fs status %d %s", s.kind, s.start, s.status, s.error)
    for line in problems[:10]:
        logger.error("version problem: %s", line)
    return 0 if not errors and not problems and report.reload_status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
