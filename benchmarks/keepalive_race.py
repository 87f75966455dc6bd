"""Reproduce the dropped connection of ``make loadtest``: the keep-alive race between uvicorn and httpx.

``python -m benchmarks.keepalive_race`` starts uvicorn on a tiny ASGI app twice. Background traffic keeps the
server's threads busy (GIL contention, as scoring does), while 30 clients reuse pooled connections after
idling about as long as the timeouts. The client's pool forgets idle connections after 1 s (httpx's default
is 5 s).

* Server keep-alive equal to the client's (uvicorn's default 5 s against httpx's 5 s, scaled here to 1 s):
  the server's timer fires while the client reuses the connection. The close takes effect one busy
  event-loop turn later, the request arrives in a socket nobody reads, and closing it sends a reset:
  ``httpx.ReadError``.
* Server keep-alive longer than the client's (``POLKU_KEEP_ALIVE_S``, 75 s): the client always closes first.

Measured on 2026-11-30 (2 shared cores): 56 ReadErrors in 1200 requests with 1 s / 1 s, none with 3 s / 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx

from benchmarks.httpload import HOST, free_port


def _burn(ms: float) -> None:
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/busy`` burns 20 ms of CPU in a worker thread; anything else answers at once."""
    del receive
    if scope["type"] != "http":
        return
    if scope["path"] == "/busy":
        import anyio.to_thread

        await anyio.to_thread.run_sync(_burn, 20.0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _clients(port: int, *, idle_s: float, rounds: int, clients: int, busy: int, expiry_s: float) -> Counter[str]:
    errors: Counter[str] = Counter()
    base = f"http://{HOST}:{port}"
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=expiry_s)
    async with (
        httpx.AsyncClient(base_url=base, timeout=30.0) as load,
        httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client,
    ):
        stop = asyncio.Event()

        async def background() -> None:
            while not stop.is_set():
                try:
                    await load.get("/busy")
                except httpx.HTTPError:
                    pass

        async def reuse() -> None:
            for _ in range(rounds):
                try:
                    await client.post("/x", json={"a": 1})
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                await asyncio.sleep(random.uniform(idle_s - 0.1, idle_s + 0.1))  # noqa: S311

        loaders = [asyncio.create_task(background()) for _ in range(busy)]
        await asyncio.gather(*(reuse() for _ in range(clients)))
        stop.set()
        await asyncio.gather(*loaders)
    return errors


def run(server_keep_alive_s: int, *, client_expiry_s: float, rounds: int, clients: int) -> Counter[str]:
    """Errors of one round of clients against a server with the given keep-alive timeout."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "benchmarks.keepalive_race:app", "--host", HOST, "--port", str(port)]
    cmd += ["--timeout-keep-alive", str(server_keep_alive_s), "--log-level", "warning"]
    proc = subprocess.Popen(cmd)  # noqa: S603
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://{HOST}:{port}/", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return asyncio.run(
            _clients(port, idle_s=client_expiry_s, rounds=rounds, clients=clients, busy=40, expiry_s=client_expiry_s)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> int:
    """Run both configurations and print the errors of each."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--clients", type=int, default=30)
    args = p.parse_args()
    for server_s in (1, 3):
        errors = run(server_s, client_expiry_s=1.0, rounds=args.rounds, clients=args.clients)
        total = args.rounds * args.clients
        print(f"server keep-alive {server_s} s, client idle expiry 1 s: {dict(errors) or 'no errors'} of {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
