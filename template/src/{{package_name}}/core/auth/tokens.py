"""Verifying bearer tokens into a :class:`Principal`, and minting development tokens."""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ..errors import ProblemError, UnauthorizedError
from ..settings import AuthSettings
from .jwks import JwksCache, JwksUnavailableError
from .principal import Principal

HMAC_ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


class AuthUnavailableError(ProblemError):
    status = 503


class TokenVerifier:
    """Checks signature, algorithm, issuer, audience and lifetime of a bearer token.

    The accepted algorithm is decided by configuration, never by the token: with a JWKS
    only the configured asymmetric algorithms are accepted (and must match the key's own),
    otherwise only HS256 with the shared secret. That rules out ``alg: none`` and the
    classic confusion of verifying an HS256 token with a public key as HMAC secret.
    """

    def __init__(self, settings: AuthSettings, jwks: JwksCache | None = None) -> None:
        self._settings = settings
        self._jwks = jwks

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError("malformed token") from exc
        key, algorithm = await self._key_for(header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise UnauthorizedError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise UnauthorizedError("token audience not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise UnauthorizedError("token issuer not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise UnauthorizedError("token signature invalid") from exc
        except jwt.InvalidTokenError as exc:
            raise UnauthorizedError("token invalid") from exc
        if _contains_nul(claims):
            # Claims become subjects, tenants and audit entries: text no database stores.
            raise UnauthorizedError("token claims contain a NUL character")
        return self._principal(claims)

    async def _key_for(self, header: Mapping[str, Any]) -> tuple[Any, str]:
        algorithm = header.get("alg")
        if self._jwks is not None:
            if algorithm not in self._settings.asymmetric_algorithms:
                raise UnauthorizedError("token algorithm not accepted")
            kid = header.get("kid")
            try:
                key = await self._jwks.key_for(kid if isinstance(kid, str) else None)
            except JwksUnavailableError as exc:
                raise AuthUnavailableError(
                    "tokens cannot be verified right now", headers={"Retry-After": "30"}
                ) from exc
            if key is None:
                raise UnauthorizedError("token signing key unknown")
            if key.algorithm_name != algorithm:
                raise UnauthorizedError("token algorithm does not match its key")
            return key.key, algorithm
        secret = self._settings.jwt_secret
        if algorithm != HMAC_ALGORITHM or secret is None:
            raise UnauthorizedError("token algorithm not accepted")
        return secret.get_secret_value(), HMAC_ALGORITHM

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        settings = self._settings
        scope = claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else []
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(_strings(claims.get(settings.roles_claim))),
            scopes=frozenset(scopes),
            groups=frozenset(_strings(claims.get(settings.groups_claim))),
            tenant=_optional_string(claims.get(settings.tenant_claim)),
            claims=dict(claims),
        )


def _contains_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _optional_string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def mint_token(
    settings: AuthSettings,
    subject: str,
    *,
    roles: Iterable[str] = (),
    groups: Iterable[str] = (),
    tenant: str | None = None,
    ttl: timedelta = timedelta(hours=1),
    now: datetime | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """An HS256 token the service accepts while it verifies with the shared secret."""
    if settings.jwt_secret is None or settings.jwks_url is not None:
        raise ValueError("tokens can only be minted when auth.jwt_secret verifies them")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        settings.roles_claim: sorted(roles),
        settings.groups_claim: sorted(groups),
    }
    if tenant is not None:
        claims[settings.tenant_claim] = tenant
    claims.update(extra_claims or {})
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=HMAC_ALGORITHM)
