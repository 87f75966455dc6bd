"""Pure ASGI middlewares: security headers, body size cap (413), per-route timing without values, load shedding."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.metrics import ServiceMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("service.access")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    """Adds the standard security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Rejects bodies larger than ``max_bytes`` with 413: by ``Content-Length`` first, then by streamed size.

    The body is buffered (at most ``max_bytes``) before the app sees it, so an oversized stream never reaches
    a handler half-read.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = {"errors": [{"field": "body", "reason": f"body larger than {self.max_bytes} bytes"}]}
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"errors": [{"field": "content-length", "reason": "not a number"}]})
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, too_large, [(b"connection", b"close")])
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, too_large, [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class TimingMiddleware:
    """Observes latency per route template and logs method, route, status and duration only."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.latency.labels(method=method, route=template, status=str(status)).observe(elapsed)
            logger.info("%s %s %d %.1fms", method, template, status, elapsed * 1000)


class LoadShedMiddleware:
    """Bounds the work one worker has in flight; past the bound it answers 503 with ``Retry-After`` at once.

    A saturated worker that keeps accepting work only queues it: every answer gets slow and clients time out.
    Turning the excess away at once keeps the admitted answers fast and tells clients when to try again.
    Scoring is CPU-bound and the requests in flight share one core, so each admitted request slows all the
    others. Two bounds apply:

    * at most ``limit`` requests in flight;
    * no new request while the oldest one in flight has run longer than ``max_age_s``, unless fewer than
      ``floor`` are in flight. When the core is shared (a retrain, a model reload, another process), requests
      take longer, and this bound admits fewer of them, so that the admitted ones still answer in time.

    Paths in ``exempt`` (health, readiness, metrics, the operator's model reload) are never shed and not
    counted. Paths in ``heavy`` (the reload: seconds of loading and encoding on the same core) are exempt too,
    but while one runs it counts as the oldest request, so only ``floor`` requests run beside it.

    Paths in ``reserved`` (feedback, a short database write) skip the age bound and may use ``reserve``
    places beyond ``limit``: a decision is not turned away because rankings fill the worker, and when it is,
    it gets the same 503 (so the case tool sends it again), never silence.

    The state lives on the worker's event loop (one per process), so it needs no lock.

    Args:
        app: the wrapped ASGI app.
        limit: requests admitted at once (feedback may exceed it by ``reserve``).
        reserve: extra places for ``reserved`` paths.
        max_age_s: age of the oldest request in flight past which new requests are turned away.
        floor: requests always admitted (up to ``limit``) whatever the age of the oldest.
        retry_after_s: the ``Retry-After`` value.
        metrics: shed counter and in-flight gauges.
        route_of: the route a request will reach, or ``None`` (its template labels the metrics; raw paths would
            carry client ids). It is also put in the scope, so the timing middleware files a shed request under
            its route with status 503.
        exempt: paths never shed.
        heavy: exempt paths whose run limits admission like an old request in flight.
        reserved: paths that may use the reserve.
        clock: monotonic clock (tests).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        reserve: int,
        max_age_s: float,
        retry_after_s: int,
        metrics: ServiceMetrics,
        route_of: Callable[[Scope], Any],
        floor: int = 2,
        exempt: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics", "/v1/admin/model:reload"}),
        heavy: frozenset[str] = frozenset({"/v1/admin/model:reload"}),
        reserved: frozenset[str] = frozenset({"/v1/feedback"}),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.limit = limit
        self.reserve = reserve
        self.max_age_s = max_age_s
        self.floor = min(floor, limit)
        self.retry_after = str(retry_after_s).encode()
        self.metrics = metrics
        self.route_of = route_of
        self.exempt = exempt
        self.heavy = heavy
        self.reserved = reserved
        self.clock = clock
        self._started: dict[int, float] = {}  # request number -> start, in admission order
        self._heavy_started: dict[int, float] = {}
        self._next = 0
        metrics.in_flight_limit.set(limit)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet answered."""
        return len(self._started)

    def _admits(self, path: str) -> bool:
        n = len(self._started)
        if path in self.reserved:
            return n < self.limit + self.reserve
        if n >= self.limit:
            return False
        if n < self.floor:
            return True
        oldest = min([next(iter(self._started.values())), *self._heavy_started.values()])
        return self.clock() - oldest <= self.max_age_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.exempt:
            if path not in self.heavy:
                await self.app(scope, receive, send)
                return
            number = self._next
            self._next += 1
            self._heavy_started[number] = self.clock()
            try:
                await self.app(scope, receive, send)
            finally:
                del self._heavy_started[number]
            return
        if not self._admits(path):
            route = self.route_of(scope)
            if route is not None:
                scope["route"] = route
            self.metrics.shed.labels(route=getattr(route, "path", "unmatched")).inc()
            body = {"errors": [{"field": None, "reason": "server busy: too many requests in flight, retry later"}]}
            await _send_json(send, 503, body, [(b"retry-after", self.retry_after)])
            return
        number = self._next
        self._next += 1
        self._started[number] = self.clock()
        self.metrics.in_flight.set(len(self._started))
        try:
            await self.app(scope, receive, send)
        finally:
            del self._started[number]
            self.metrics.in_flight.set(len(self._started))
