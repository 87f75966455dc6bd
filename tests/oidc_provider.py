"""A local OpenID Connect identity provider for tests: discovery and a JWKS served over HTTP on loopback.

The key set can be rotated and the provider taken down while a test runs; every request is counted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/jwks.json"


@dataclass
class SigningKey:
    """A private key with its ``kid`` and algorithm (RS256 or ES256)."""

    kid: str
    alg: str
    private: Any

    @classmethod
    def rsa(cls, kid: str | None = None) -> SigningKey:
        """A new RSA-2048 key for RS256."""
        return cls(kid or f"rsa-{uuid.uuid4().hex[:8]}", "RS256", rsa.generate_private_key(65537, 2048))

    @classmethod
    def ec(cls, kid: str | None = None) -> SigningKey:
        """A new P-256 key for ES256."""
        return cls(kid or f"ec-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as an identity provider publishes it."""
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        """The public key in PEM (what a key-confusion attacker signs HS256 tokens with)."""
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A token signed with this key (header ``kid`` = this key's unless overridden)."""
        headers = {"kid": self.kid, **header}
        return jwt.encode(claims, self.private, algorithm=headers.pop("alg", self.alg), headers=headers)


@dataclass
class LocalIdentityProvider:
    """Discovery at ``/.well-known/openid-configuration`` and the key set at ``/jwks.json`` on 127.0.0.1."""

    published: list[SigningKey]
    down: bool = False
    requests: Counter[str] = field(default_factory=Counter)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> LocalIdentityProvider:
        """Serve in a daemon thread on a free loopback port."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                provider.requests[self.path] += 1
                if provider.down:
                    self._send(503, {"error": "down"})
                elif self.path == DISCOVERY:
                    self._send(200, {"issuer": provider.issuer, "jwks_uri": provider.issuer + JWKS})
                elif self.path == JWKS:
                    self._send(200, {"keys": [k.public_jwk() for k in provider.published]})
                else:
                    self._send(404, {"error": "not found"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="local-idp", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def issuer(self) -> str:
        """The issuer URL (``http://127.0.0.1:<port>``)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def jwks_fetches(self) -> int:
        """Requests for the key set so far."""
        return self.requests[JWKS]


def claims(issuer: str, audience: str, **over: Any) -> dict[str, Any]:
    """Claims of a valid counsellor token of the Helsinki centre (Keycloak-style nested roles)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": "staff-7f3a",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "realm_access": {"roles": ["offline_access", "counsellor"]},
        "polku_centre": "helsinki",
    }
    return {**base, **over}


def unsigned(claims: dict[str, Any], **header: Any) -> str:
    """An ``alg: none`` token."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT', **header})}.{_b64(claims)}."


def hs256_with(secret: bytes, claims: dict[str, Any], **header: Any) -> str:
    """An HS256 token MACed with ``secret`` by hand (PyJWT refuses PEM keys as HMAC secrets, attackers do not)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', **header})}.{_b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
