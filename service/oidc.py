"""OpenID Connect bearer tokens: the identity provider's signing keys (JWKS), cached by ``kid``, and their checks.

PyJWT's ``PyJWKClient`` fetches and parses the key set; this module keeps the keys itself, because PyJWT's own
cache forgets the whole set when it expires, so an identity provider that is down at that moment would lock
every caller out. Here the last keys fetched keep verifying tokens while the endpoint is down, a stale set is
refreshed in the background, and a token with an unknown ``kid`` (a key rotation) triggers one refetch, at
most one per ``refetch_s`` so that made-up key ids cannot make the service hammer the provider.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx
import jwt
from jwt import PyJWK, PyJWKClient

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS: Final[Mapping[str, str]] = {"RS256": "RSA", "ES256": "EC"}  # algorithm -> key type
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
HTTP_TIMEOUT_S: Final = 5.0


class IdentityProviderError(Exception):
    """The identity provider's discovery document or key set could not be fetched or used."""


class UnknownSigningKey(Exception):
    """No usable signing key has the token's ``kid`` (a refetch was refused by the rate limit or did not help)."""


@dataclass(frozen=True)
class KeySetStatus:
    """What readiness reports about the identity provider's keys.

    Attributes:
        status: ``ok`` (last fetch succeeded), ``unreachable`` (the last fetch failed; cached keys, if any, keep
            working) or ``not_loaded`` (no fetch tried yet).
        keys: usable signing keys cached.
        fetched_at: time of the last successful fetch.
        error: why the last fetch failed (no secrets: a type and a short message).
    """

    status: Literal["ok", "unreachable", "not_loaded"]
    keys: int
    fetched_at: datetime | None
    error: str | None


class JwksKeys:
    """The identity provider's signing keys by ``kid``: fetched with PyJWT's ``PyJWKClient``, cached here.

    Args:
        issuer: the provider's issuer URL (discovery reads ``<issuer>/.well-known/openid-configuration``).
        jwks_url: the key set URL; ``None`` = take ``jwks_uri`` from the discovery document.
        cache_s: age after which the keys are refreshed (in the background; the old keys keep working).
        refetch_s: least seconds between two fetches caused by unknown ``kid`` values, and between retries of a
            failed refresh.
        clock: monotonic clock (tests).
    """

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None,
        cache_s: float,
        refetch_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._configured_url = jwks_url
        self._jwks_url = jwks_url
        self.cache_s = cache_s
        self.refetch_s = refetch_s
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._fetched_wall: datetime | None = None
        self._last_attempt: float | None = None
        self._last_forced: float | None = None
        self._error: str | None = None
        self._lock = threading.Lock()  # guards the fields above
        self._fetch_lock = threading.Lock()  # one fetch at a time
        self._background: threading.Thread | None = None
        self.fetches = 0  # successful and failed key-set fetches (tests, metrics)

    # ------------------------------------------------------------------------------------------- lookups
    def key_for(self, kid: str) -> PyJWK:
        """The signing key with ``kid``; an unknown ``kid`` triggers one rate-limited refetch.

        Raises:
            UnknownSigningKey: no such key, also after the refetch (or the refetch was not allowed or failed).
        """
        with self._lock:
            key = self._keys.get(kid)
        if key is not None:
            self.refresh_if_due()
            return key
        with self._fetch_lock:
            with self._lock:
                key = self._keys.get(kid)  # a concurrent fetch may have brought it
                now = self._clock()
                allowed = self._last_forced is None or now - self._last_forced >= self.refetch_s
                if key is None and allowed:
                    self._last_forced = now
            if key is not None:
                return key
            if not allowed:
                raise UnknownSigningKey("unknown signing key (refetch rate-limited)")
            try:
                self._fetch_locked()
            except IdentityProviderError as exc:
                raise UnknownSigningKey("unknown signing key (key set unavailable)") from exc
            with self._lock:
                key = self._keys.get(kid)
        if key is None:
            raise UnknownSigningKey("unknown signing key")
        return key

    def refresh(self) -> None:
        """Fetch the key set now (start-up, tests).

        Raises:
            IdentityProviderError: discovery or the key set failed; cached keys are kept.
        """
        with self._fetch_lock:
            self._fetch_locked()

    def refresh_if_due(self) -> None:
        """Start a background refresh when the keys are stale; never blocks.

        Stale: older than ``cache_s``, or missing. No refresh starts when a fetch was tried in the last
        ``refetch_s`` or one is running.
        """
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self.cache_s
            recent = self._last_attempt is not None and now - self._last_attempt < self.refetch_s
            running = self._background is not None and self._background.is_alive()
            if not stale or recent or running:
                return
            self._last_attempt = now  # claims the attempt so concurrent callers do not start another thread
            self._background = threading.Thread(target=self._refresh_quietly, name="polku-jwks-refresh", daemon=True)
            self._background.start()

    def status(self) -> KeySetStatus:
        """The key set's state for readiness (starts a background refresh when due)."""
        self.refresh_if_due()
        with self._lock:
            if self._error is not None:
                state: Literal["ok", "unreachable", "not_loaded"] = "unreachable"
            else:
                state = "ok" if self._keys else "not_loaded"
            return KeySetStatus(state, len(self._keys), self._fetched_wall, self._error)

    # ------------------------------------------------------------------------------------------ fetching
    def _refresh_quietly(self) -> None:
        try:
            with self._fetch_lock:
                self._fetch_locked()
        except IdentityProviderError as exc:
            logger.warning("identity provider keys not refreshed, %d cached keys stay in use: %s", len(self._keys), exc)

    def _fetch_locked(self) -> None:
        """Fetch discovery (if needed) and the key set; replace the cache on success. Hold ``_fetch_lock``."""
        with self._lock:
            self._last_attempt = self._clock()
            self.fetches += 1
        try:
            url = self._jwks_url or self._discover()
            client = PyJWKClient(url, cache_jwk_set=False, timeout=HTTP_TIMEOUT_S)
            keys = usable_keys(client.get_jwk_set().keys)
            if not keys:
                raise IdentityProviderError("the key set has no RS256 or ES256 signing key with a kid")
        except IdentityProviderError as exc:
            self._failed(str(exc))
            raise
        except (jwt.PyJWTError, httpx.HTTPError, OSError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            self._failed(reason)
            raise IdentityProviderError(reason) from exc
        with self._lock:
            self._keys = keys
            self._jwks_url = url
            self._fetched_at = self._clock()
            self._fetched_wall = datetime.now(UTC)
            self._error = None
        logger.info("identity provider keys fetched: %d signing keys", len(keys))

    def _failed(self, reason: str) -> None:
        with self._lock:
            self._error = reason
            if self._configured_url is None:
                self._jwks_url = None  # discover again next time: the provider may have moved its keys

    def _discover(self) -> str:
        """``jwks_uri`` from the issuer's discovery document (whose ``issuer`` must equal the configured one)."""
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        response = httpx.get(url, timeout=HTTP_TIMEOUT_S, follow_redirects=False)
        if response.status_code != 200:
            raise IdentityProviderError(f"discovery answered {response.status_code}")
        document: Any = response.json()
        if not isinstance(document, dict):
            raise IdentityProviderError("discovery document is not a JSON object")
        if document.get("issuer") != self.issuer:
            raise IdentityProviderError("discovery document names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise IdentityProviderError("discovery document has no http(s) jwks_uri")
        return jwks_uri


def usable_keys(keys: list[PyJWK]) -> dict[str, PyJWK]:
    """Signing keys by ``kid``: RSA keys for RS256 and P-256 EC keys for ES256 only (no symmetric keys)."""
    out: dict[str, PyJWK] = {}
    for key in keys:
        kid = key.key_id
        algorithm = key.algorithm_name
        if not kid or key.public_key_use not in ("sig", None):
            continue
        if ALLOWED_ALGORITHMS.get(algorithm) != key.key_type:
            continue
        out[kid] = key
    return out


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name; a dotted name walks nested objects (Keycloak's ``realm_access.roles``).

    A name that exists as a top-level key is taken as is, so URL-like claim names with dots still work.
    """
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
