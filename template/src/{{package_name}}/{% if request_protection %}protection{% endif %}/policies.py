"""Rate limit policies per route, as the settings name them ("POST /items/{item_id}"),
compiled to match requests by method and path; the edge middleware applies them."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.routing import compile_path

from .limiter import Quota, quotas
from .settings import LimitKey, RoutePolicy


def policy_name(method: str, path: str) -> str:
    """``POST /items/{item_id}`` as a header-friendly name: ``post-items-item_id``."""
    words = [word.strip("{}") for word in path.split("/") if word]
    return "-".join([method.lower(), *words])


@dataclass(frozen=True)
class RouteLimit:
    """A route's policy, ready to match requests."""

    method: str
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
        compiled.append(RouteLimit(method, pattern, name, quotas(name, policy.limits), policy.key))
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
