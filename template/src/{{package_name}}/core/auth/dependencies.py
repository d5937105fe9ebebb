"""FastAPI dependencies: who is calling, and may they?

``OptionalPrincipalDep`` for endpoints open to anonymous callers, ``PrincipalDep`` when a
token is required (401 otherwise) and ``require_roles(...)`` when a role is (403).
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import HTTPConnection

from ..errors import ForbiddenError, ProblemError, UnauthorizedError
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


async def verify_request_token(request: HTTPConnection, token: str) -> Principal:
    """The token's principal, verified once per request (or WebSocket connection) however
    many dependencies ask."""
    # request.state lives in the ASGI scope, so middleware and dependencies share it.
    verified: dict[str, Principal] | None = getattr(request.state, "verified_tokens", None)
    if verified is None:
        verified = request.state.verified_tokens = {}
    principal = verified.get(token)
    if principal is None:
        verifier: TokenVerifier = request.app.state.token_verifier
        principal = verified[token] = await verifier.verify(token)
    return principal


def bearer_token(request: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header; None without one."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    return token if scheme.lower() == "bearer" and token else None


async def principal_if_valid(request: HTTPConnection) -> Principal | None:
    """The caller, when a valid bearer token came with the request; None otherwise.

    Lenient, unlike ``OptionalPrincipalDep``: for what runs on every route (flag
    targeting, rate limit keys), where a stale or unverifiable token must not turn a
    public route (health, metrics) into a 401. Routes that need the caller still verify
    the token themselves and reject it there; the verification is done once either way.
    """
    token = bearer_token(request)
    if token is None:
        return None
    try:
        return await verify_request_token(request, token)
    except ProblemError:
        return None


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


async def service_admin(request: Request, principal: PrincipalDep) -> Principal:
    """Admits callers holding the role that runs the service as a whole
    (``APP_AUTH__SERVICE_ADMIN_ROLE``)."""
    role: str = request.app.state.settings.auth.service_admin_role
    if not principal.has_roles(role):
        raise ForbiddenError(f"missing role: {role}")
    return principal


ServiceAdminDep = Annotated[Principal, Depends(service_admin)]


def _needs_principal(dependant: Dependant) -> bool:
    return any(
        dependency.call is current_principal or _needs_principal(dependency)
        for dependency in dependant.dependencies
    )


async def authentication_problem(request: Request) -> ProblemError | None:
    """The 401 the matched route would answer this request, if it needs a token and the
    request has no valid one; None otherwise.

    FastAPI reads and parses the body before it runs a route's dependencies, so without
    this an anonymous caller sending a malformed body would learn of the body's problem
    before being told to authenticate.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not _needs_principal(route.dependant):
        return None
    credentials = await _bearer(request)
    if credentials is None:
        return UnauthorizedError("a bearer token is required", error=None)
    try:
        await verify_request_token(request, credentials.credentials)
    except ProblemError as exc:  # an invalid token, or keys that cannot be fetched
        return exc
    return None
