"""Overload test with a model swap: 2 × the measured capacity of one worker while a new champion is trained.

``python -m benchmarks.loadtest --duration 60`` (``make loadtest``):

1. prepares ``<POLKU_DATA_DIR>/loadtest`` once (a synthetic world, a champion trained with ``training.train``,
   the world loaded into a SQLite store) and reuses it on later runs;
2. starts the real service (``polku serve``, one worker, default settings) on a free loopback port;
3. measures its capacity: closed-loop traffic at the worker's in-flight limit, answers per second;
4. offers ``--overload`` × capacity (default 2 ×) of suggestions (50 %), candidates (25 %) and feedback (25 %)
   open-loop (arrivals do not wait for answers), and at ``--swap-at`` of the run retrains in a subprocess (a new
   version moved to ``@champion``) and calls ``POST /v1/admin/model:reload``; traffic continues until the
   reload answered and an "after" window ran;
5. reports, per phase and overall: p50/p95/p99 of accepted answers, the share of 503s (each must carry
   ``Retry-After``), timeouts and feedback lost. Feedback answered 503 is sent again after ``Retry-After``, as
   a case tool would; every event answered 2xx must be in the store;
6. fails (exit 1) on any transport error or timeout, any answer other than 2xx or 503 + ``Retry-After``, any
   feedback lost, a failed reload, a ranking answer without ``model.version`` or with a foreign version, or
   a request started after the reload that the old model answered. The p99 target (``--p99-target-ms``, 150)
   is reported as met or missed; on a shared machine it is a measurement, not a gate.

The suite runs a 10-second version (``tests/service/test_load.py``) through :func:`run_load`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

logger = logging.getLogger("benchmarks.loadtest")

HOST = "127.0.0.1"
MODEL_NAME = "polku-ranker"
ALIAS = "champion"
RANKING_KINDS = ("suggestions", "candidates")
MIX: tuple[tuple[str, float], ...] = (("suggestions", 0.5), ("candidates", 0.25), ("feedback", 0.25))
PHASES = ("before", "during", "after")
RESULTS = Path(__file__).resolve().parent / "results"


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

    def token(self, role: str, centre: str | None) -> str:
        """A bearer token for a role and centre (valid for an hour)."""
        return self.header(role, centre)["Authorization"].removeprefix("Bearer ")

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
    """One HTTP attempt.

    Attributes:
        kind: suggestions, candidates or feedback.
        start: seconds since the run began, when the request was sent.
        latency: seconds to the answer (or to the failure).
        status: HTTP status; 0 = transport error or timeout.
        version: ``model.version`` of a ranking answer.
        has_model: a ranking answer named its model.
        error: exception name or the start of an error body.
        retry_after: the ``Retry-After`` header of a 503.
        event_id: the feedback event sent.
        timeout: the client gave up waiting.
    """

    kind: str
    start: float
    latency: float
    status: int
    version: str | None = None
    has_model: bool = False
    error: str | None = None
    retry_after: str | None = None
    event_id: str | None = None
    timeout: bool = False

    @property
    def accepted(self) -> bool:
        """Answered 2xx."""
        return 200 <= self.status < 300

    @property
    def shed(self) -> bool:
        """Turned away with 503 (with or without ``Retry-After``)."""
        return self.status == 503


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


@dataclass
class LoadReport:
    """Samples of a run, the swap timeline (seconds since the run began) and the feedback outcome."""

    samples: list[Sample] = field(default_factory=list)
    swap_started: float | None = None
    reload_done: float | None = None
    reload_status: int | None = None
    old_version: str | None = None
    new_version: str | None = None
    wall_s: float = 0.0
    offered_rate: float = 0.0
    capacity: Capacity | None = None
    feedback_final: dict[str, int] = field(default_factory=dict)

    def phase_of(self, s: Sample) -> str:
        """``before`` the swap began, ``during`` retrain and reload, ``after`` the reload answered."""
        if self.swap_started is None or s.start < self.swap_started:
            return "before"
        if self.reload_done is None or s.start < self.reload_done:
            return "during"
        return "after"

    def errors(self) -> list[Sample]:
        """Transport failures, timeouts, and answers other than 2xx or 503 with ``Retry-After``."""
        return [s for s in self.samples if not (s.accepted or (s.shed and s.retry_after))]

    def timeouts(self) -> list[Sample]:
        """Requests the client gave up waiting for."""
        return [s for s in self.samples if s.timeout]

    def feedback_accepted(self) -> set[str]:
        """Event ids that were finally answered 2xx."""
        return {eid for eid, status in self.feedback_final.items() if 200 <= status < 300}

    def feedback_lost(self, stored: set[str]) -> list[str]:
        """Events accepted but not in the store, or never accepted (retries exhausted, transport errors)."""
        lost = [eid for eid in self.feedback_accepted() if eid not in stored]
        lost += [eid for eid, status in self.feedback_final.items() if not 200 <= status < 300]
        return sorted(lost)

    def version_problems(self) -> list[str]:
        """Ranking answers without a version, with a foreign version, or served by the old model after the swap."""
        allowed = {self.old_version, self.new_version}
        problems: list[str] = []
        for s in self.samples:
            if s.kind not in RANKING_KINDS or not s.accepted:
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

    def _row(self, name: str, group: list[Sample], span: float) -> dict[str, Any]:
        accepted = [s.latency * 1000.0 for s in group if s.accepted]
        shed = sum(1 for s in group if s.shed)
        return {
            "phase": name,
            "requests": len(group),
            "sent_per_s": len(group) / span if span > 0 else 0.0,
            "accepted_per_s": len(accepted) / span if span > 0 else 0.0,
            "p50_ms": _pct(accepted, 50),
            "p95_ms": _pct(accepted, 95),
            "p99_ms": _pct(accepted, 99),
            "max_ms": max(accepted) if accepted else float("nan"),
            "shed_share": shed / len(group) if group else 0.0,
            "errors": sum(1 for s in group if not (s.accepted or (s.shed and s.retry_after))),
            "versions": ",".join(sorted({s.version for s in group if s.version})),
        }

    def table(self) -> list[dict[str, Any]]:
        """Per phase and overall: requests, rates, p50/p95/p99/max of accepted answers (ms), 503 share, errors."""
        bounds = {
            "before": (0.0, self.swap_started if self.swap_started is not None else self.wall_s),
            "during": (self.swap_started or 0.0, self.reload_done or self.wall_s),
            "after": (self.reload_done or self.wall_s, self.wall_s),
        }
        rows = []
        for phase in PHASES:
            lo, hi = bounds[phase]
            rows.append(self._row(phase, [s for s in self.samples if self.phase_of(s) == phase], hi - lo))
        rows.append(self._row("all", self.samples, self.wall_s))
        return rows

    def summary(self, stored: set[str] | None = None) -> dict[str, Any]:
        """The figures of the run (what the README and the issue ask for)."""
        overall = self.table()[-1]
        feedback = [s for s in self.samples if s.kind == "feedback"]
        return {
            "offered_rate": self.offered_rate,
            "capacity": None if self.capacity is None else asdict(self.capacity),
            "requests": len(self.samples),
            "accepted": sum(1 for s in self.samples if s.accepted),
            "accepted_p50_ms": overall["p50_ms"],
            "accepted_p99_ms": overall["p99_ms"],
            "shed_share": overall["shed_share"],
            "shed_without_retry_after": sum(1 for s in self.samples if s.shed and not s.retry_after),
            "timeouts": len(self.timeouts()),
            "errors": len(self.errors()),
            "feedback_events": len(self.feedback_final),
            "feedback_attempts_shed": sum(1 for s in feedback if s.shed),
            "feedback_accepted": len(self.feedback_accepted()),
            "feedback_lost": None if stored is None else len(self.feedback_lost(stored)),
            "reload_status": self.reload_status,
            "versions": f"{self.old_version}->{self.new_version}",
            "version_problems": len(self.version_problems()),
            "wall_s": self.wall_s,
        }

    def render(self) -> str:
        """The table around the swap as Markdown."""
        head = (
            "| phase | requests | sent/s | accepted/s | p50 ms | p95 ms | p99 ms | max ms | 503 share | errors "
            "| model versions |"
        )
        lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in self.table():
            lines.append(
                f"| {r['phase']} | {r['requests']} | {r['sent_per_s']:.1f} | {r['accepted_per_s']:.1f} | "
                f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
                f"{r['shed_share']:.1%} | {r['errors']} | {r['versions']} |"
            )
        swap = (
            f"swap: retrain+promote from {self.swap_started:.1f}s, reload answered {self.reload_status} at "
            f"{self.reload_done:.1f}s; v{self.old_version} -> v{self.new_version}"
            if self.swap_started is not None and self.reload_done is not None
            else "swap: not completed"
        )
        return "\n".join([*lines, swap])


# --------------------------------------------------------------------------------------------- generator
Request = tuple[str, str, dict[str, Any], str]  # method, path, body, bearer token
CLIENT_IDLE_EXPIRY_S = 5.0  # like httpx: a connection idle this long is closed by the client, not reused


def _request_for(kind: str, targets: Targets, tokens: Tokens, rng: random.Random) -> Request:
    if kind == "suggestions":
        cid, centre = rng.choice(targets.clients)
        body: dict[str, Any] = {"client_id": cid, "k": 5, "lang": rng.choice(["fi", "sv", "en"])}
        return "POST", "/v1/suggestions", body, tokens.token("counsellor", centre)
    if kind == "candidates":
        oid, centre = rng.choice(targets.opportunities)
        return "POST", f"/v1/opportunities/{oid}/candidates", {"k": 20}, tokens.token("coordinator", centre)
    cid, centre = rng.choice(targets.clients)
    oid, _ = rng.choice(targets.opportunities)
    event: dict[str, Any] = {
        "event_id": f"load-{uuid.uuid4().hex}",
        "type": "decision",
        "client_id": cid,
        "opportunity_id": oid,
        "decision": rng.choice(["accepted", "rejected"]),
        "occurred_at": "2025-09-02T10:00:00Z",
    }
    if event["decision"] == "rejected":
        event["reason_code"] = "timing"
    return "POST", "/v1/feedback", event, tokens.token("counsellor", centre)


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking pre-serialised requests over raw asyncio streams.

    The load generator shares 2 cores with the server it measures; at a few hundred requests per second an
    HTTP client library costs a sizeable part of a core (and httpx's pool slows down quadratically with queued
    requests), so the generator writes bytes and parses only the status line and two headers.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle_since = 0.0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, payload: bytes, timeout_s: float) -> tuple[int, str | None, bytes]:
        """Status, ``Retry-After`` and body; raises on transport errors and ``TimeoutError``."""
        if self.writer is not None and time.perf_counter() - self.idle_since > CLIENT_IDLE_EXPIRY_S:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(payload)
            await self.writer.drain()
            status, retry_after, body, close = await asyncio.wait_for(_read_response(self.reader), timeout_s)
        except BaseException:
            self.close()  # a late answer must not be read as the next request's
            raise
        if close:
            self.close()
        self.idle_since = time.perf_counter()
        return status, retry_after, body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str | None, bytes, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before the answer")
    status = int(status_line.split(b" ", 2)[1])
    length, retry_after, close = 0, None, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"retry-after":
            retry_after = value.strip().decode()
        elif lname == b"connection" and b"close" in value.lower():
            close = True
    return status, retry_after, await reader.readexactly(length), close


def _serialise(host: str, request: Request) -> bytes:
    method, path, body, token = request
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _attempt(
    conn: _Connection, kind: str, request: Request, sent_at: float, t0: float, timeout_s: float
) -> Sample:
    """Send one request; latency counts from ``sent_at`` (its scheduled time, so client queueing counts too)."""
    event_id = str(request[2]["event_id"]) if kind == "feedback" else None
    try:
        status, retry_after, body = await conn.send(_serialise(conn.host, request), timeout_s)
    except TimeoutError:
        return Sample(kind, sent_at - t0, time.perf_counter() - sent_at, 0, error="timeout", timeout=True)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return Sample(kind, sent_at - t0, time.perf_counter() - sent_at, 0, error=type(exc).__name__, event_id=event_id)
    latency = time.perf_counter() - sent_at
    if latency > timeout_s:  # answered, but after the caller gave up
        return Sample(kind, sent_at - t0, latency, 0, error="timeout", timeout=True, event_id=event_id)
    sample = Sample(kind, sent_at - t0, latency, status, event_id=event_id)
    if kind in RANKING_KINDS and status == 200:
        model = json.loads(body).get("model")
        sample.has_model = isinstance(model, dict)
        sample.version = str(model.get("version")) if isinstance(model, dict) and model.get("version") else None
    elif status >= 300:
        sample.error = body[:200].decode(errors="replace")
        sample.retry_after = retry_after
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
    mix: Sequence[tuple[str, float]] = MIX,
    seed: int = 0,
    timeout_s: float = 10.0,
    connections: int = 64,
    feedback_attempts: int = 30,
) -> LoadReport:
    """Send open-loop traffic at ``rate`` for ``duration_s`` and run ``swap`` at ``swap_at`` of the run.

    Args:
        base_url: server URL.
        targets: stored clients and opportunities to ask about.
        tokens: token source.
        duration_s: planned length; extended until ``after_s`` passed after the reload answered.
        rate: requests per second (evenly spaced arrivals that never wait for earlier answers).
        swap: coroutine doing retrain/promotion and the reload; returns (reload status, new version).
        swap_at: fraction of ``duration_s`` at which the swap starts.
        after_s: minimum traffic after the reload answered (default 30 % of ``duration_s``).
        mix: request kinds and weights.
        seed: seed of the request mix.
        timeout_s: the client's timeout per request, from its scheduled time (a case tool's patience).
        connections: keep-alive connections of the client (far above what the server admits; a request
            that finds them all busy waits, and the wait counts in its latency).
        feedback_attempts: sends of one feedback event at most (503 + ``Retry-After`` is retried).

    Returns:
        The samples, the swap timeline and the final answer to each feedback event.
    """
    rng = random.Random(seed)  # noqa: S311 - traffic mix, not security
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    report = LoadReport(offered_rate=rate)
    after = duration_s * 0.3 if after_s is None else after_s
    url = httpx.URL(base_url)
    host, port = str(url.host), int(url.port or 80)
    queue: asyncio.Queue[tuple[str, Request, float, int]] = asyncio.Queue()
    samples: list[Sample] = []
    pending: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as client:
        report.old_version = await _served_version(client, tokens)
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

        async def requeue_later(item: tuple[str, Request, float, int], delay: float) -> None:
            await asyncio.sleep(delay)
            await queue.put(item)

        async def worker() -> None:
            conn = _Connection(host, port)
            try:
                while True:
                    kind, request, sent_at, attempt = await queue.get()
                    sample = await _attempt(conn, kind, request, max(sent_at, t0), t0, timeout_s)
                    samples.append(sample)
                    if kind == "feedback":
                        event_id = str(request[2]["event_id"])
                        report.feedback_final[event_id] = sample.status
                        if sample.shed and sample.retry_after and attempt + 1 < feedback_attempts:
                            wait = min(float(sample.retry_after), 2.0) * rng.uniform(0.5, 1.0)
                            retry = (kind, request, time.perf_counter() + wait, attempt + 1)
                            task = asyncio.create_task(requeue_later(retry, wait))
                            pending.add(task)
                            task.add_done_callback(pending.discard)
                    queue.task_done()
            finally:
                conn.close()

        workers = [asyncio.create_task(worker()) for _ in range(connections)]
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
            queue.put_nowait((kind, _request_for(kind, targets, tokens, rng), t0 + due, 0))
            i += 1
        if swap_task is not None:
            await swap_task
        while pending or not queue.empty() or queue._unfinished_tasks:  # noqa: SLF001 - join() misses requeues
            await asyncio.sleep(0.05)
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        report.samples = sorted(samples, key=lambda s: s.start)
        report.wall_s = time.perf_counter() - t0
        if report.new_version is None:
            report.new_version = report.old_version
    return report


@dataclass(frozen=True)
class Capacity:
    """Closed-loop throughput of the server at ``concurrency`` requests in flight."""

    answers_per_s: float
    concurrency: int
    seconds: float
    p50_ms: float
    shed: int
    errors: int


async def measure_capacity(
    base_url: str,
    targets: Targets,
    tokens: Tokens,
    *,
    concurrency: int,
    seconds: float = 10.0,
    warmup_s: float = 2.0,
    mix: Sequence[tuple[str, float]] = MIX,
    seed: int = 1,
) -> Capacity:
    """Answers per second with ``concurrency`` clients that each send again as soon as answered (no shedding)."""
    rng = random.Random(seed)  # noqa: S311 - traffic mix, not security
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    url = httpx.URL(base_url)
    done: list[Sample] = []
    t0 = time.perf_counter()
    stop = t0 + warmup_s + seconds

    async def worker() -> None:
        conn = _Connection(str(url.host), int(url.port or 80))
        try:
            while time.perf_counter() < stop:
                kind = rng.choices(kinds, weights)[0]
                request = _request_for(kind, targets, tokens, rng)
                done.append(await _attempt(conn, kind, request, time.perf_counter(), t0, 30.0))
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    window = [s for s in done if s.start >= warmup_s and s.start + s.latency <= warmup_s + seconds]
    accepted = [s for s in window if s.accepted]
    return Capacity(
        answers_per_s=len(accepted) / seconds,
        concurrency=concurrency,
        seconds=seconds,
        p50_ms=_pct([s.latency * 1000.0 for s in accepted], 50),
        shed=sum(1 for s in window if s.shed),
        errors=sum(1 for s in window if not (s.accepted or s.shed)),
    )


async def _served_version(client: httpx.AsyncClient, tokens: Tokens) -> str | None:
    r = await client.get("/v1/model", headers=tokens.header("data_scientist", None))
    r.raise_for_status()
    version = r.json()["model"].get("version")
    return None if version is None else str(version)


async def reload(client: httpx.AsyncClient, tokens: Tokens, *, attempts: int = 60) -> tuple[int, str | None]:
    """``POST /v1/admin/model:reload`` as an admin (again after ``Retry-After`` while the worker is busy).

    Returns:
        The final status and the version now served.
    """
    for _ in range(attempts):
        r = await client.post("/v1/admin/model:reload", headers=tokens.header("admin", None), timeout=300.0)
        if r.status_code != 503 or "retry-after" not in r.headers:
            break
        await asyncio.sleep(min(float(r.headers["retry-after"]), 2.0))
    version = r.json().get("model", {}).get("version") if r.status_code == 200 else None
    if r.status_code != 200:
        logger.error("reload answered %d: %s", r.status_code, r.text[:300])
    return r.status_code, None if version is None else str(version)


def stored_feedback(database_url: str, event_ids: Iterable[str]) -> set[str]:
    """The event ids among ``event_ids`` that the store holds."""
    from sqlalchemy import select

    from service.storage.db import make_engine, make_session_factory
    from service.storage.tables import FeedbackRow

    ids = sorted(set(event_ids))
    found: set[str] = set()
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found.update(s.scalars(select(FeedbackRow.event_id).where(FeedbackRow.event_id.in_(chunk))))
    finally:
        engine.dispose()
    return found


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
    """Start ``polku serve`` (the production entry point) on a free port; yield its URL once ``/readyz`` is 200.

    The process gets SIGTERM at the end (graceful shutdown) and is killed only if it does not exit.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "polku", "serve", "--host", HOST, "--port", str(port), "--log-level", "warning"]
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
        # A batch job beside a service runs niced (training belongs on another machine; here it shares 2 cores).
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, preexec_fn=lambda: os.nice(10)
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
def _in_flight_limit() -> int:
    """The worker's in-flight limit (``POLKU_MAX_IN_FLIGHT`` or the settings' default)."""
    from service.settings import Settings

    default = Settings.model_fields["max_in_flight"].default
    return int(os.environ.get("POLKU_MAX_IN_FLIGHT") or default)


def _write_results(summary: dict[str, Any], report: LoadReport) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"loadtest-{stamp}.json"
    path.write_text(json.dumps({"summary": summary, "phases": report.table()}, indent=1, default=str), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Prepare, serve, measure capacity, overload with a swap, report; exit 1 on any error."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0, help="Planned seconds of traffic.")
    p.add_argument("--overload", type=float, default=2.0, help="Offered rate as a multiple of the capacity.")
    p.add_argument("--rate", type=float, default=None, help="Offer this rate instead (requests/s; no calibration).")
    p.add_argument("--calibrate", type=float, default=10.0, help="Seconds of the capacity measurement.")
    p.add_argument("--timeout", type=float, default=10.0, help="Client timeout per request (s).")
    p.add_argument("--p99-target-ms", type=float, default=150.0, help="Reported target for accepted answers.")
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
    database_url = f"sqlite:///{data_dir / 'polku.db'}"
    targets = read_targets(database_url)
    with running_server(server_env(data_dir, secret), data_dir / "loadtest-server.log") as url:
        capacity: Capacity | None = None
        rate = args.rate
        if rate is None:
            capacity = asyncio.run(
                measure_capacity(url, targets, tokens, concurrency=_in_flight_limit(), seconds=args.calibrate)
            )
            rate = args.overload * capacity.answers_per_s
            logger.info(
                "capacity: %.1f answers/s at %d in flight (p50 %.1f ms); offering %.1f req/s",
                capacity.answers_per_s,
                capacity.concurrency,
                capacity.p50_ms,
                rate,
            )
        swap = retrain_swap(data_dir, tokens, seed=args.seed, mode=args.swap_mode)
        report = asyncio.run(
            run_load(
                url,
                targets,
                tokens,
                duration_s=args.duration,
                rate=rate,
                swap=swap,
                swap_at=args.swap_at,
                timeout_s=args.timeout,
            )
        )
        report.capacity = capacity
    stored = stored_feedback(database_url, report.feedback_accepted())
    summary = report.summary(stored)
    logger.info("\n%s", report.render())
    p99 = summary["accepted_p99_ms"]
    logger.info(
        "offered %.1f req/s (%s); accepted p99 %.1f ms (target %.0f ms: %s); 503 share %.1f%% (without "
        "Retry-After: %d); timeouts %d; errors %d; feedback: %d events, %d accepted, %d attempts shed, %d lost; "
        "version problems %d; reload %s",
        rate,
        f"{args.overload:g} x capacity {capacity.answers_per_s:.1f}/s" if capacity else "fixed rate",
        p99,
        args.p99_target_ms,
        "met" if p99 <= args.p99_target_ms else "MISSED",
        100.0 * summary["shed_share"],
        summary["shed_without_retry_after"],
        summary["timeouts"],
        summary["errors"],
        summary["feedback_events"],
        summary["feedback_accepted"],
        summary["feedback_attempts_shed"],
        summary["feedback_lost"],
        summary["version_problems"],
        report.reload_status,
    )
    logger.info("results: %s", _write_results(summary, report))
    for s in report.errors()[:10]:
        logger.error("error: %s at %.2fs status %d %s", s.kind, s.start, s.status, s.error)
    for line in report.version_problems()[:10]:
        logger.error("version problem: %s", line)
    for eid in report.feedback_lost(stored)[:10]:
        logger.error("feedback lost: %s (final status %s)", eid, report.feedback_final.get(eid))
    failed = summary["errors"] or summary["feedback_lost"] or summary["version_problems"] or report.reload_status != 200
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
