"""Section ``throughput``: ``POST /v1/suggestions`` with ``polku serve --workers 2``, measured by wrk (a C generator).

The in-process and asyncio measurements of the suggestions section share the benchmark's Python process with the
load generator; wrk costs the server almost nothing, so its requests per second are the service's own. Each
connection cycles through the same latest-cohort requests as the suggestions section (inline profile, all kinds,
k=5, a counsellor token of the client's centre).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.data import Fixtures
from benchmarks.httpload import run_load, uvicorn_server
from benchmarks.report import Section
from benchmarks.suggestions import http_requests_for

logger = logging.getLogger(__name__)

TARGET_RPS = 300.0
WORKERS = 2
CONNECTIONS = 16
THREADS = 2

_LUA = """
local requests = {%s}
local i = 0
request = function()
  i = i %% #requests + 1
  return requests[i]
end
done = function(summary, latency, requests_)
  local e = summary.errors
  io.write("WRK_JSON " .. string.format(
    '{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max) .. "\\n")
end
"""


def lua_script(raw_requests: list[bytes]) -> str:
    """A wrk script that sends ``raw_requests`` (serialised HTTP/1.1) in turn and prints a JSON summary."""

    def long_string(b: bytes) -> str:
        text = b.decode("utf-8")
        level = "=" * 4
        while f"]{level}]" in text:
            level += "="
        return f"[{level}[{text}]{level}]"

    return _LUA % ",\n".join(long_string(r) for r in raw_requests)


def parse_summary(stdout: str) -> dict[str, Any]:
    """The JSON line the script's ``done`` prints."""
    for line in stdout.splitlines():
        if line.startswith("WRK_JSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return data
    raise RuntimeError(f"no summary in wrk's output: {stdout[-500:]}")


def run(section: Section, fx: Fixtures) -> None:
    """Requests per second and latency with 2 uvicorn workers at concurrency 16, at the largest catalogue."""
    wrk = shutil.which("wrk")
    largest = max(fx.sizes.catalogues)
    check = f"wrk req/s, {WORKERS} workers, c={CONNECTIONS}, {largest} items"
    if wrk is None:
        section.note("wrk is not installed (Debian: apt-get install wrk; `make bench` installs it where it can)")
        section.check(check, None, ">=", TARGET_RPS, "req/s")
        return
    fx.model  # noqa: B018 - build the model before timing anything
    dd = fx.data_dir(largest, fx.sizes.store_clients)
    fx.close_server()  # one server at a time on the 2 cores
    requests = http_requests_for(fx)
    script = fx.workdir / "wrk-suggestions.lua"
    script.write_text(lua_script(requests), encoding="utf-8")
    seconds = max(5, int(fx.sizes.http_seconds))
    with uvicorn_server(dd.env(), fx.workdir / "logs", workers=WORKERS) as server:
        warm = run_load(server.port, requests, n=min(40, len(requests)), concurrency=WORKERS, max_s=30)
        if warm.statuses.get(200, 0) == 0:
            raise RuntimeError(f"suggestions failed before the wrk run: {dict(warm.statuses)}")
        cmd = [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), server.base]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)  # noqa: S603
    s = parse_summary(out.stdout)
    errors = sum(int(s[k]) for k in ("connect", "read", "write", "status", "timeout"))
    rps = s["requests"] / (s["duration_us"] / 1e6) if s["duration_us"] else None
    section.add_row(
        tool=Path(wrk).name,
        workers=WORKERS,
        connections=CONNECTIONS,
        threads=THREADS,
        items=largest,
        seconds=seconds,
        requests=s["requests"],
        rps=rps,
        p50_ms=s["p50_us"] / 1000.0,
        p90_ms=s["p90_us"] / 1000.0,
        p99_ms=s["p99_us"] / 1000.0,
        max_ms=s["max_us"] / 1000.0,
        errors=errors,
        non_2xx=s["status"],
    )
    section.note(
        f"uvicorn --workers {WORKERS} on the 2-core machine; wrk -t{THREADS} -c{CONNECTIONS} on the same machine "
        "(wrk's own CPU is counted against the server)."
    )
    section.check(check, rps, ">=", TARGET_RPS, "req/s")
    section.check("wrk errors and non-2xx answers", errors, "<=", 0, "requests")
