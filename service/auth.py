"""Bearer-token authentication (local HS256 or identity-provider RS256/ES256 JWTs) and role × centre authorisation."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Final, Literal, get_args

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from features.centres import CENTRES
from service.oidc import ALLOWED_ALGORITHMS, JwksKeys, UnknownSigningKey, claim
from service.settings import Settings

Role = Literal["counsellor", "coordinator", "data_scientist", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
PRECEDENCE: Final[tuple[str, ...]] = ("admin", "data_scientist", "coordinator", "counsellor")
ALGORITHM: Final = "HS256"
MAX_TTL_S: Final = 7 * 24 * 3600
_LEEWAY_S: Final = 5

_bearer = HTTPBearer(
    auto_error=False,
    description=(
        "JWT: from the identity provider (RS256/ES256; iss, aud, exp, sub and the configured role and centre "
        "claims) or, in development, minted by `polku token` (HS256; sub, role, centre, aud, exp)."
    ),
)


@dataclass(frozen=True)
class Principal:
    """The verified caller.

    Attributes:
        subject: ``sub`` claim (a staff pseudonym).
        role: the role the caller acts in, one of :data:`ROLES` (the most privileged one held that the route
            accepts).
        centre: the caller's centre (``None`` only for data scientists and admins).
        roles: every Polku role the token carries (identity-provider tokens may carry several).
    """

    subject: str
    role: str
    centre: str | None
    roles: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.roles:
            object.__setattr__(self, "roles", frozenset({self.role}))

    def can_access_centre(self, centre: str) -> bool:
        """True when the caller may act on data of ``centre`` (admins may act on every centre)."""
        return "admin" in self.roles or self.centre == centre

    def has_role(self, role: str) -> bool:
        """True when the token carries ``role``."""
        return role in self.roles


class AuthError(HTTPException):
    """401 with a ``WWW-Authenticate`` header and a reason that names no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=reason,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


def mint_token(
    settings: Settings, *, role: str, centre: str | None, subject: str | None = None, ttl_s: int = 3600
) -> str:
    """Create a signed token (for local use, tests and the ``polku token`` command).

    Args:
        settings: supplies the key and audience.
        role: one of :data:`ROLES`.
        centre: a centre id of ``features.centres.CENTRES`` (may be ``None`` for data scientists and admins).
        subject: ``sub`` claim; a random pseudonym when omitted.
        ttl_s: lifetime in seconds (1 s to 7 days).

    Raises:
        ValueError: for an unknown role or centre or a lifetime out of range.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if centre is not None and centre not in CENTRES:
        raise ValueError(f"centre must be one of {', '.join(CENTRES)}")
    if centre is None and role in ("counsellor", "coordinator"):
        raise ValueError(f"a {role} token needs a centre")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be between 1 and {MAX_TTL_S} seconds")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject or f"{role}-{uuid.uuid4().hex[:12]}",
        "role": role,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_s,
    }
    if centre is not None:
        claims["centre"] = centre
    return jwt.encode(claims, settings.jwt_key(), algorithm=ALGORITHM)


class TokenVerifier:
    """Verifies bearer tokens of both kinds the service accepts, chosen by the token's ``alg`` header.

    * ``HS256`` with the local secret (``POLKU_JWT_SECRET``, or the generated dev secret): claims ``sub``,
      ``role``, ``centre``, ``aud``, ``exp``.
    * ``RS256`` / ``ES256`` from the identity provider (``POLKU_OIDC_*``): key by ``kid`` from its JWKS; ``iss``,
      ``aud``, ``exp`` and ``nbf`` checked with a small leeway; role and centre from configurable claims.

    Any other algorithm (``none``, ``HS512``, ``RS512``, ...) is refused before a key is looked at, so a token
    HMAC-signed with the provider's public key (key confusion) never meets an asymmetric key, and an HS256 token
    is refused outright when no local secret is configured.

    Args:
        settings: the service settings.
        keys: the identity provider's key set (default: built from the settings when OIDC is configured).
    """

    def __init__(self, settings: Settings, *, keys: JwksKeys | None = None) -> None:
        self.settings = settings
        self.hs256_key = settings.hs256_key()
        if keys is None and settings.oidc_issuer is not None:
            keys = JwksKeys(
                issuer=settings.oidc_issuer,
                jwks_url=settings.oidc_jwks_url,
                cache_s=settings.oidc_jwks_cache_s,
                refetch_s=settings.oidc_jwks_refetch_s,
            )
        self.keys = keys

    def verify(self, token: str) -> Principal:
        """The verified caller.

        Raises:
            AuthError: for any invalid token (expired, forged, unknown key, wrong issuer or audience, bad claims).
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("invalid token") from exc
        alg = header.get("alg")
        if alg == ALGORITHM and self.hs256_key is not None:
            return self._verify_local(token, self.hs256_key)
        if isinstance(alg, str) and alg in ALLOWED_ALGORITHMS and self.keys is not None:
            return self._verify_oidc(token, alg, header.get("kid"))
        raise AuthError("invalid token")

    def _verify_local(self, token: str, key: str) -> Principal:
        claims = _decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=self.settings.jwt_audience,
            leeway=_LEEWAY_S,
            require=["exp", "sub", "aud", "role"],
        )
        role = claims.get("role")
        return _principal(claims.get("sub"), [role] if isinstance(role, str) else [], claims.get("centre"))

    def _verify_oidc(self, token: str, alg: str, kid: object) -> Principal:
        assert self.keys is not None
        if not isinstance(kid, str) or not kid:
            raise AuthError("invalid token: no key id")
        try:
            key = self.keys.key_for(kid)
        except UnknownSigningKey as exc:
            raise AuthError("invalid token: unknown signing key") from exc
        if key.algorithm_name != alg:
            raise AuthError("invalid token")
        claims = _decode(
            token,
            key.key,
            algorithms=[alg],
            audience=self.settings.oidc_audience,
            issuer=self.settings.oidc_issuer,
            leeway=self.settings.oidc_leeway_s,
            require=["exp", "iss", "aud", "sub"],
        )
        roles = claim(claims, self.settings.oidc_role_claim)
        centre = claim(claims, self.settings.oidc_centre_claim)
        if isinstance(centre, list) and len(centre) == 1:
            centre = centre[0]  # providers that emit every custom attribute as a list
        values = [roles] if isinstance(roles, str) else roles if isinstance(roles, list) else []
        return _principal(claims.get("sub"), values, centre)


def _decode(
    token: str,
    key: Any,
    *,
    algorithms: list[str],
    audience: str | None,
    leeway: int,
    require: list[str],
    issuer: str | None = None,
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": require},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise AuthError("token not yet valid") from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthError("token audience not accepted") from exc
    except jwt.InvalidIssuerError as exc:
        raise AuthError("token issuer not accepted") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("invalid token") from exc
    return claims


def _principal(sub: object, role_values: list[object], centre: object) -> Principal:
    """A principal from verified claims: the Polku roles among ``role_values`` (others are ignored), a centre."""
    roles = frozenset(r for r in role_values if isinstance(r, str) and r in ROLES)
    if not roles or not isinstance(sub, str) or not sub:
        raise AuthError("invalid token claims")
    if centre is not None and (not isinstance(centre, str) or centre not in CENTRES):
        raise AuthError("invalid token claims")
    if centre is None and roles & {"counsellor", "coordinator"} and "admin" not in roles:
        raise AuthError("invalid token claims: centre missing")
    return Principal(subject=sub, role=_acting_role(roles), centre=centre, roles=roles)


def _acting_role(roles: frozenset[str], among: tuple[str, ...] = ROLES) -> str:
    """The most privileged of ``roles`` that is also in ``among`` (admins act as admins)."""
    return next(r for r in PRECEDENCE if r in roles and r in among)


def verify_token(settings: Settings, token: str) -> Principal:
    """Verify one token with a fresh :class:`TokenVerifier` (for tools; the app keeps one verifier).

    Raises:
        AuthError: for any invalid token.
    """
    return TokenVerifier(settings).verify(token)


def _verifier_from(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """FastAPI dependency: the verified caller, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("missing bearer token")
    principal = _verifier_from(request).verify(credentials.credentials)
    request.state.principal = principal
    return principal


def require_roles(*roles: str) -> object:
    """Dependency factory: the caller must hold one of ``roles`` (403 otherwise)."""

    def _check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.roles & set(roles):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"role {principal.role!r} may not do this")
        # a caller holding several roles acts (and is audited) in the most privileged one this route accepts
        return replace(principal, role=_acting_role(principal.roles, roles))

    return Depends(_check)


def ensure_centre(principal: Principal, centre: str) -> None:
    """Raise 403 unless the caller may act on ``centre``."""
    if not principal.can_access_centre(centre):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="resource belongs to another centre")
