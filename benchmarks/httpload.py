"""Real-HTTP measurements: a uvicorn subprocess on a free loopback port and a lean asyncio load generator.

The generator speaks HTTP/1.1 keep-alive over raw asyncio streams with pre-serialised requests, so the client
costs a few tens of microseconds per request and leaves the (shared, 2-core) CPU to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> dict[str, float]:
    """Resident set size now and its peak (VmHWM) of a process, in MiB (Linux /proc)."""
    out: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = int(value.split()[0]) / 1024.0
    return out


@dataclass
class Server:
    """A running uvicorn process."""

    proc: subprocess.Popen[bytes]
    port: int
    started_s: float
    log_path: Path
    rss_at_start: dict[str, float] = field(default_factory=dict)
    requests_served: int = 0

    @property
    def base(self) -> str:
        """Base URL."""
        return f"http://{HOST}:{self.port}"


def _get(port: int, path: str, timeout: float = 2.0) -> int:
    """Status of a GET over a fresh connection (0 when refused)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    except OSError:
        return 0


@contextlib.contextmanager
def uvicorn_server(
    env: dict[str, str], log_dir: Path, *, workers: int = 1, timeout_s: float = 240.0
) -> Iterator[Server]:
    """Start ``uvicorn service.app:create_app --factory`` and wait until ``/readyz`` answers 200.

    Yields:
        The server; ``started_s`` is the time from process start to the first 200 from ``/readyz``.
    """
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"uvicorn-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "service.app:create_app",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path.cwd())  # noqa: S603
    try:
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"uvicorn exited with {proc.returncode}: {tail}")
            if _get(port, "/readyz") == 200:
                break
            if time.perf_counter() - start > timeout_s:
                raise TimeoutError(f"service not ready after {timeout_s}s")
            time.sleep(0.05)
        yield Server(proc, port, time.perf_counter() - start, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def build_request(method: str, path: str, body: Any | None, token: str | None) -> bytes:
    """A serialised HTTP/1.1 keep-alive request."""
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


@dataclass
class LoadResult:
    """Latencies (s) of the completed requests, statuses, wall time."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    wall_s: float = 0.0
    errors: int = 0
    sample_body: bytes = b""

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    chunked = False
    close = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value.strip())
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif lname == b"connection" and b"close" in value.lower():
            close = True
    if not chunked:
        return status, await reader.readexactly(length), close
    parts = []
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            break
        parts.append(await reader.readexactly(size))
        await reader.readline()
    return status, b"".join(parts), close


async def _load(port: int, requests: Sequence[bytes], n: int, concurrency: int, max_s: float) -> LoadResult:
    res = LoadResult()
    counter = iter(range(n))
    deadline = time.perf_counter() + max_s

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for i in counter:
                if time.perf_counter() > deadline:
                    break
                req = requests[i % len(requests)]
                t0 = time.perf_counter()
                try:
                    writer.write(req)
                    await writer.drain()
                    status, body, close = await _read_response(reader)
                except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                    res.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
                    continue
                res.latencies.append(time.perf_counter() - t0)
                res.statuses[status] += 1
                if not res.sample_body and status == 200:
                    res.sample_body = body[:4000]
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.wall_s = time.perf_counter() - start
    return res


def run_load(port: int, requests: Sequence[bytes], *, n: int, concurrency: int, max_s: float) -> LoadResult:
    """Send ``n`` requests (cycling through ``requests``) with ``concurrency`` keep-alive connections.

    Stops early after ``max_s`` seconds; the result holds what completed.
    """
    return asyncio.run(_load(port, requests, n, concurrency, max_s))
