"""Bearer-token authentication (HS256 JWT) and role × centre authorisation."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Final, Literal, get_args

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from features.centres import CENTRES
from service.settings import Settings

Role = Literal["counsellor", "coordinator", "data_scientist", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
ALGORITHM: Final = "HS256"
MAX_TTL_S: Final = 7 * 24 * 3600
_LEEWAY_S: Final = 5

_bearer = HTTPBearer(auto_error=False, description="JWT (HS256) with claims sub, role, centre, aud, exp.")


@dataclass(frozen=True)
class Principal:
    """The verified caller.

    Attributes:
        subject: ``sub`` claim (a staff pseudonym).
        role: one of :data:`ROLES`.
        centre: the caller's centre (``None`` only for data scientists and admins).
    """

    subject: str
    role: str
    centre: str | None

    def can_access_centre(self, centre: str) -> bool:
        """True when the caller may act on data of ``centre`` (admins may act on every centre)."""
        return self.role == "admin" or self.centre == centre


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


def verify_token(settings: Settings, token: str) -> Principal:
    """Verify signature (HS256 only), audience and expiry, and the role/centre claims.

    Raises:
        AuthError: for any invalid token (expired, forged, ``alg: none``, wrong audience, bad claims).
    """
    try:
        claims = jwt.decode(
            token,
            settings.jwt_key(),
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            leeway=_LEEWAY_S,
            options={"require": ["exp", "sub", "aud", "role"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthError("token audience not accepted") from exc
    except jwt.PyJWTError as exc:
        raise AuthError("invalid token") from exc
    role, centre, sub = claims.get("role"), claims.get("centre"), claims.get("sub")
    if role not in ROLES or not isinstance(sub, str) or not sub:
        raise AuthError("invalid token claims")
    if centre is not None and (not isinstance(centre, str) or centre not in CENTRES):
        raise AuthError("invalid token claims")
    if centre is None and role in ("counsellor", "coordinator"):
        raise AuthError("invalid token claims: centre missing")
    return Principal(subject=sub, role=str(role), centre=centre)


def _settings_from(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """FastAPI dependency: the verified caller, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("missing bearer token")
    principal = verify_token(_settings_from(request), credentials.credentials)
    request.state.principal = principal
    return principal


def require_roles(*roles: str) -> object:
    """Dependency factory: the caller must hold one of ``roles`` (403 otherwise)."""

    def _check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"role {principal.role!r} may not do this")
        return principal

    return Depends(_check)


def ensure_centre(principal: Principal, centre: str) -> None:
    """Raise 403 unless the caller may act on ``centre``."""
    if not principal.can_access_centre(centre):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="resource belongs to another centre")
