"""FastAPI dependencies: who is calling, and may they?

``OptionalPrincipalDep`` for endpoints open to anonymous callers, ``PrincipalDep`` when a
token is required (401 otherwise) and ``require_roles(...)`` when a role is (403).
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..errors import ForbiddenError, UnauthorizedError
from ..settings import AuthSettings
from .jwks import JwksCache
from .principal import Principal
from .tokens import TokenVerifier

_bearer = HTTPBearer(auto_error=False, description="JWT bearer token")


@asynccontextmanager
async def auth_lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: AuthSettings = app.state.settings.auth
    if settings.jwks_url is None:
        app.state.token_verifier = TokenVerifier(settings)
        yield
        return
    async with httpx.AsyncClient() as client:
        jwks = JwksCache(
            str(settings.jwks_url),
            client,
            ttl=settings.jwks_cache_seconds,
            min_refetch=settings.jwks_min_refetch_seconds,
        )
        app.state.token_verifier = TokenVerifier(settings, jwks)
        yield


async def verify_request_token(request: Request, token: str) -> Principal:
    """The token's principal, verified once per request however many dependencies ask."""
    # request.state lives in the ASGI scope, so middleware and dependencies share it.
    verified: dict[str, Principal] | None = getattr(request.state, "verified_tokens", None)
    if verified is None:
        verified = request.state.verified_tokens = {}
    principal = verified.get(token)
    if principal is None:
        verifier: TokenVerifier = request.app.state.token_verifier
        principal = verified[token] = await verifier.verify(token)
    return principal


async def optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    if credentials is None:
        return None
    return await verify_request_token(request, credentials.credentials)


OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


async def current_principal(principal: OptionalPrincipalDep) -> Principal:
    if principal is None:
        raise UnauthorizedError("a bearer token is required", error=None)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits only callers holding every role in ``roles``."""

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.has_roles(*roles):
            missing = ", ".join(sorted(set(roles) - principal.roles))
            raise ForbiddenError(f"missing role: {missing}")
        return principal

    return check
