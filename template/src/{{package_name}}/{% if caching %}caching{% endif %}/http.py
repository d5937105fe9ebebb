"""HTTP caching headers: what browsers, proxies and CDNs may keep, and how to purge it.

Routes opt in by name with a :class:`CachePolicy` (``apply_policies``); the middleware
adds to their 200 and 304 answers to GET and HEAD:

* ``Cache-Control: public, max-age=..., s-maxage=..., stale-while-revalidate=...,
  stale-if-error=...`` (RFC 9111, RFC 5861);
* ``CDN-Cache-Control`` (RFC 9213), which CDNs read instead of ``Cache-Control``, so the
  CDN may keep an answer longer than browsers;
* ``Surrogate-Key`` (Fastly, space-separated) and ``Cache-Tag`` (Cloudflare, Akamai,
  comma-separated): the cache tags of the answer, so a CDN purge by tag follows a write
  (see ``purge.py``).

A request carrying ``Authorization`` gets ``private, no-store`` instead, unless its route's
policy says ``shared_when_authenticated``: a shared cache must never hand one user's
answer to another. So does an answer given for a tenant (the tenancy slice): it holds
that tenant's data, and the URL alone does not tell a shared cache whose it is. Routes
without a policy are left as they are.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.tenant import current_tenant

PRIVATE = "private, no-store"
# How the OpenAPI document describes the headers a policy adds.
DOCUMENTED_HEADERS = {
    "Cache-Control": "How long browsers and shared caches may keep this answer; "
    "private, no-store for authenticated requests and answers for a tenant",
    "CDN-Cache-Control": "How long a CDN may keep this answer (RFC 9213)",
    "Surrogate-Key": "The answer's cache tags, space-separated, to purge a CDN by",
    "Cache-Tag": "The answer's cache tags, comma-separated, to purge a CDN by",
}
# Answers that may be cached (RFC 9111 section 3 for GET/HEAD with these statuses).
CACHEABLE_STATUSES = frozenset({200, 304})


@dataclass(frozen=True)
class CachePolicy:
    """How long each kind of cache may keep a route's answers."""

    # Browsers: 0 makes them revalidate every time (a cheap 304 thanks to the ETag).
    max_age: int = 0
    # Shared caches (proxies, CDNs).
    shared_max_age: int = 60
    stale_while_revalidate: int = 30
    stale_if_error: int = 300
    # The answer's cache tags from the route's path parameters.
    tags: Callable[[Mapping[str, Any]], Sequence[str]] = field(default=lambda params: ())
    # Answers to authenticated requests may be shared too (they depend on no user).
    shared_when_authenticated: bool = False

    def cache_control(self) -> str:
        return (
            f"public, max-age={self.max_age}, s-maxage={self.shared_max_age}, "
            f"stale-while-revalidate={self.stale_while_revalidate}, "
            f"stale-if-error={self.stale_if_error}"
        )

    def cdn_cache_control(self) -> str:
        return (
            f"max-age={self.shared_max_age}, "
            f"stale-while-revalidate={self.stale_while_revalidate}, "
            f"stale-if-error={self.stale_if_error}"
        )


def _authenticated(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope["headers"])


# The attribute of a route object (the one the router matches) that carries its policy;
# set by ``apply_policies`` and read per request off ``scope["route"]``.
_POLICY_ATTRIBUTE = "cache_policy"


@dataclass(frozen=True)
class _AppliedPolicy:
    policy: CachePolicy
    # Rendered once: the headers of a policy do not change between requests.
    cache_control: str
    cdn_cache_control: str


class CacheHeadersMiddleware:
    """Adds the headers of the matched route's :class:`CachePolicy`, and ``private,
    no-store`` to authenticated answers of routes without one.

    One for the whole service: the slices that own routes give them policies with
    ``apply_policies``, and the policy travels with the route the router matched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(scope, message)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _add_headers(scope: Scope, message: Message) -> None:
    headers = MutableHeaders(scope=message)
    if message["status"] not in CACHEABLE_STATUSES or "cache-control" in headers:
        return
    applied = getattr(scope.get("route"), _POLICY_ATTRIBUTE, None)
    if not isinstance(applied, _AppliedPolicy):
        if _authenticated(scope):
            headers["Cache-Control"] = PRIVATE
        return
    for_tenant = current_tenant.get() is not None
    if for_tenant or (_authenticated(scope) and not applied.policy.shared_when_authenticated):
        headers["Cache-Control"] = PRIVATE
        return
    headers["Cache-Control"] = applied.cache_control
    headers["CDN-Cache-Control"] = applied.cdn_cache_control
    tags = applied.policy.tags(scope.get("path_params", {}))
    if tags:
        headers["Surrogate-Key"] = " ".join(tags)
        headers["Cache-Tag"] = ",".join(tags)


def apply_policies(
    app: FastAPI, routes: Iterable[BaseRoute], policies: Mapping[str, CachePolicy]
) -> None:
    """Gives ``routes`` (a router's: the app holds included routers, not their routes)
    the policies named after them, and adds the headers those send to their 200 and 304
    in the OpenAPI document, so that it describes what the service answers.

    A slice calls it from its ``instrument`` hook. A policy that names none of the routes
    is refused: it would silently cache nothing.
    """
    headers = {
        name: {"description": description, "schema": {"type": "string"}}
        for name, description in DOCUMENTED_HEADERS.items()
    }
    unused = set(policies)
    for route in routes:
        if not isinstance(route, APIRoute) or route.name not in policies:
            continue
        policy = policies[route.name]
        unused.discard(route.name)
        applied = _AppliedPolicy(policy, policy.cache_control(), policy.cdn_cache_control())
        setattr(route, _POLICY_ATTRIBUTE, applied)
        # Copies: routes may share their response descriptions (the items' ETag header).
        responses = dict(route.responses)
        for status in (200, 304):
            response = dict(responses.get(status, {}))
            response["headers"] = {**response.get("headers", {}), **headers}
            responses[status] = response
        route.responses = responses
    if unused:
        raise ValueError(f"cache policies for no route: {', '.join(sorted(unused))}")
    app.openapi_schema = None
