"""Rate limits per route: from settings (``APP_PROTECTION__RATE_LIMITS__ROUTES``) or in
code with :func:`rate_limit`.

Settings' limits wrap the matched route's ASGI app, so they are counted after routing
(the policy knows its route) but before the body is read or any dependency runs. The
dependency runs with the route's other dependencies, after FastAPI has read the body:
use it where a limit belongs with the code (a login attempt), the settings elsewhere.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import ProblemError
from .filters import Refusal
from .limiter import Quota, quotas
from .middleware import Protection, client_address
from .settings import LimitKey, RoutePolicy


def policy_name(method: str, path: str) -> str:
    """``POST /items/{item_id}`` as a header-friendly name: ``post-items-item_id``."""
    words = [word.strip("{}") for word in path.split("/") if word]
    return "-".join([method.lower(), *words])


async def _key(protection: Protection, scope: Scope, key: LimitKey) -> tuple[str, bool]:
    if key == "route":
        return "route", False
    if key == "client":
        return f"client:{client_address(scope)}", False
    return await protection.rate_limit_key(scope)


class RouteRateLimit:
    """A route's ASGI app, counted against its policy first."""

    def __init__(self, app: ASGIApp, name: str, policy: RoutePolicy) -> None:
        self.app = app
        self.name = name
        self.key = policy.key
        self.quotas = quotas(name, policy.limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protection: Protection = scope["app"].state.protection
        key, exempt = await _key(protection, scope, self.key)
        if not exempt:
            refusal = await protection.limit(scope, self.name, self.quotas, key)
            if refusal is not None:
                await protection.refuse(scope, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def apply_route_policies(app: FastAPI, policies: dict[str, RoutePolicy]) -> None:
    """Wraps each route a policy names; refuses policies naming no route, so that a
    misspelt name does not leave a route unprotected."""
    unmatched = set(policies)
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods or ():
            name = f"{method} {route.path}"
            if name in policies:
                unmatched.discard(name)
                route.app = RouteRateLimit(
                    route.app, policy_name(method, route.path), policies[name]
                )
    if unmatched:
        raise ValueError(
            "protection.rate_limits.routes names no route: " + ", ".join(sorted(unmatched))
        )


class RefusedError(ProblemError):
    """A refusal raised from a dependency: 429, or 503 when the counters are down and
    the limits fail closed."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail, headers=refusal.headers)
        self.status = refusal.status


def rate_limit(
    *limits: str, key: LimitKey = "user", name: str | None = None
) -> Callable[[Request], Awaitable[None]]:
    """A dependency counting each call of its route against ``limits``::

    @router.post("/login", dependencies=[Depends(rate_limit("5/minute", key="client"))])
    """
    cached: dict[str, tuple[str, tuple[Quota, ...]]] = {}

    async def check(request: Request) -> None:
        scope = request.scope
        route: Any = scope.get("route")
        if not cached:
            path = str(getattr(route, "path", scope["path"]))
            policy = name or policy_name(request.method, path)
            cached[policy] = (policy, quotas(policy, list(limits)))
        policy, policy_quotas = next(iter(cached.values()))
        protection: Protection = request.app.state.protection
        limit_key, exempt = await _key(protection, scope, key)
        if exempt:
            return
        refusal = await protection.limit(scope, policy, policy_quotas, limit_key)
        if refusal is not None:
            protection.observer.refused(refusal.reason)
            raise RefusedError(refusal)

    return check
