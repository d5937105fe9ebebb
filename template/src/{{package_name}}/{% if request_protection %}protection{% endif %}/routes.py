"""Rate limits per route: from settings (``APP_PROTECTION__RATE_LIMITS__ROUTES``) or in
code with :func:`rate_limit`.

Settings' policies are matched by the edge middleware against the request's method and
path, with the route's own path template, so they are counted before the body is read or
any dependency runs. The dependency runs with the route's other dependencies, after
FastAPI has read the body: use it where a limit belongs with the code (a login attempt),
the settings elsewhere.
"""

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.routing import compile_path

from ..core.errors import ProblemError
from .filters import Refusal
from .limiter import Quota, quotas
from .settings import LimitKey, RoutePolicy

if TYPE_CHECKING:  # the middleware matches these policies: it imports this module
    from .middleware import Protection


def policy_name(method: str, path: str) -> str:
    """``POST /items/{item_id}`` as a header-friendly name: ``post-items-item_id``."""
    words = [word.strip("{}") for word in path.split("/") if word]
    return "-".join([method.lower(), *words])


@dataclass(frozen=True)
class RouteLimit:
    """A route's policy, ready to match requests."""

    method: str
    path: str
    pattern: re.Pattern[str]
    name: str
    quotas: tuple[Quota, ...]
    key: LimitKey

    def matches(self, method: str, path: str) -> bool:
        # HEAD is answered by the GET route (core/http_semantics.py).
        return (method == self.method or (method == "HEAD" and self.method == "GET")) and (
            self.pattern.match(path) is not None
        )


def route_limits(policies: Mapping[str, RoutePolicy]) -> tuple[RouteLimit, ...]:
    compiled = []
    for route, policy in policies.items():
        method, _, path = route.partition(" ")
        pattern, _, _ = compile_path(path)
        name = policy_name(method, path)
        compiled.append(
            RouteLimit(method, path, pattern, name, quotas(name, policy.limits), policy.key)
        )
    return tuple(compiled)


def check_routes_exist(app: FastAPI, policies: Mapping[str, RoutePolicy]) -> None:
    """Refuses policies naming no operation of the OpenAPI document, so that a misspelt
    name does not leave a route unprotected."""
    paths: dict[str, dict[str, Any]] = app.openapi().get("paths", {})
    operations = {
        f"{method.upper()} {path}" for path, methods in paths.items() for method in methods
    }
    unmatched = sorted(set(policies) - operations)
    if unmatched:
        raise ValueError("protection.rate_limits.routes names no route: " + ", ".join(unmatched))


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
    cached: list[tuple[str, tuple[Quota, ...]]] = []

    async def check(request: Request) -> None:
        scope = request.scope
        if not cached:
            path = str(getattr(scope.get("route"), "path", scope["path"]))
            policy = name or policy_name(request.method, path)
            cached.append((policy, quotas(policy, list(limits))))
        policy, policy_quotas = cached[0]
        protection: Protection = request.app.state.protection
        limit_key, exempt = await protection.key_for(scope, key)
        if exempt:
            return
        refusal = await protection.limit(scope, policy, policy_quotas, limit_key)
        if refusal is not None:
            protection.observer.refused(refusal.reason)
            raise RefusedError(refusal)

    return check
