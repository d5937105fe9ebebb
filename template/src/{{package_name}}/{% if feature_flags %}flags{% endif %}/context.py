"""The evaluation context of a request, set once so every flag read in it uses it.

``FlagContextMiddleware`` runs for every request. The targeting key is the caller's
subject when a valid token came with the request, otherwise a stable anonymous id from
the ``X-Anonymous-Id`` header or the ``anonymous_id`` cookie, so percentage rollouts stay
sticky for visitors too. OpenFeature's transaction context carries it to any code the
request runs: handlers and services call the client without passing the context along.

The context is built on the request's first flag read, not before: a request that reads
no flag costs a context variable, and only a new visitor who was served a flag gets the
cookie, whatever response the handler returns. A flag read after the response has
started (a background task, a streaming body) still gets a context, but its new id can
no longer reach the visitor as a cookie.

A WebSocket passes the middleware by: whatever authenticates it calls
``target_connection`` (the GraphQL slice does, at ``connection_init``).
"""

import re
import threading
import uuid
from contextvars import ContextVar
from typing import Any

from fastapi import Request, Response
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.transaction_context import ContextVarsTransactionContextPropagator
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.auth.dependencies import principal_if_valid
from ..core.auth.principal import Principal
from ..core.tenant import current_tenant

ANONYMOUS_HEADER = "x-anonymous-id"
ANONYMOUS_COOKIE = "anonymous_id"
# A caller-chosen id becomes a targeting key: keep it short and printable.
_VALID_ANONYMOUS_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
UNTARGETED_PATHS = ("/health/", "/metrics")
# Claims copied into the context when the token has them (targeting by plan, country).
COPIED_CLAIMS = ("plan", "country")


def context_for(principal: Principal | None, anonymous_id: str) -> EvaluationContext:
    # The tenant the request acts for (with the tenancy slice, however it was named:
    # token, host or gateway header), else the token's claim.
    tenant = current_tenant.get() or (principal.tenant if principal is not None else None)
    if principal is None:
        anonymous: dict[str, Any] = {"anonymous": True}
        if tenant is not None:
            anonymous["tenant"] = tenant
        return EvaluationContext(anonymous_id, anonymous)
    attributes: dict[str, Any] = {
        "anonymous": False,
        "groups": sorted(principal.groups),
        "roles": sorted(principal.roles),
    }
    if tenant is not None:
        attributes["tenant"] = tenant
    for claim in COPIED_CLAIMS:
        value = principal.claims.get(claim)
        if isinstance(value, str):
            attributes[claim] = value
    return EvaluationContext(principal.subject, attributes)


def _anonymous_id(connection: HTTPConnection) -> str | None:
    # An invalid header does not hide a valid cookie.
    for candidate in (
        connection.headers.get(ANONYMOUS_HEADER),
        connection.cookies.get(ANONYMOUS_COOKIE),
    ):
        if candidate and _VALID_ANONYMOUS_ID.fullmatch(candidate):
            return candidate
    return None


def target_connection(connection: HTTPConnection, principal: Principal | None) -> None:
    """Targets the flag reads of a WebSocket connection, once its caller is known.

    ``FlagContextMiddleware`` gives requests their context; a WebSocket's caller is often
    known only from its first message (browsers cannot send headers with one), so the code
    that authenticates it calls this instead, in the connection's task: every read that
    follows there, and in the tasks it starts, targets ``principal``, or the visitor's id
    from the handshake's header or cookie, or an id of the connection's own.
    """
    anonymous_id = _anonymous_id(connection) or uuid.uuid4().hex
    api.set_transaction_context(context_for(principal, anonymous_id))


class RequestTargeting:
    """Who the flag reads of one request target, worked out on the first of them."""

    def __init__(self, request: Request, principal: Principal | None) -> None:
        self._request = request
        self._principal = principal
        self._context: EvaluationContext | None = None
        # Sync handlers run in worker threads: two of them must not mint two ids.
        self._lock = threading.Lock()
        # The Set-Cookie header value handing a new visitor's id back, once there is one.
        self.cookie: str | None = None

    def context(self) -> EvaluationContext:
        if self._context is None:
            with self._lock:
                if self._context is None:
                    self._context = self._build()
        return self._context

    def _build(self) -> EvaluationContext:
        anonymous_id = _anonymous_id(self._request)
        if anonymous_id is None:
            anonymous_id = uuid.uuid4().hex
            if self._principal is None:
                # Secure when the request came over HTTPS (uvicorn honours X-Forwarded-Proto
                # from trusted proxies), so a TLS site never sends the id in the clear.
                secure = self._request.url.scheme == "https"
                self.cookie = _visitor_cookie(anonymous_id, secure=secure)
        return context_for(self._principal, anonymous_id)


def _visitor_cookie(anonymous_id: str, *, secure: bool) -> str:
    # Starlette's own cookie formatting, borrowed from a response that is never sent.
    carrier = Response()
    carrier.set_cookie(
        ANONYMOUS_COOKIE,
        anonymous_id,
        max_age=365 * 24 * 3600,
        httponly=True,
        secure=secure,
        samesite="lax",
    )
    return carrier.headers["set-cookie"]


_request_targeting: ContextVar[RequestTargeting | None] = ContextVar(
    "request_targeting", default=None
)


class RequestContextPropagator(ContextVarsTransactionContextPropagator):
    """OpenFeature's transaction context: the current request's, built when first read.

    ``api.set_transaction_context`` still works as OpenFeature documents it (a job, a
    test): a context set explicitly replaces the request's for the code that follows.
    """

    def get_transaction_context(self) -> EvaluationContext:
        targeting = _request_targeting.get()
        if targeting is not None:
            return targeting.context()
        return super().get_transaction_context()

    def set_transaction_context(self, transaction_context: EvaluationContext) -> None:
        _request_targeting.set(None)
        super().set_transaction_context(transaction_context)


class FlagContextMiddleware:
    """Gives each request its targeting, and a new visitor the cookie with their id.

    Middleware rather than a dependency: the cookie goes on whatever response leaves the
    app, including one a handler builds itself (FastAPI drops a dependency's cookies
    then), and routes do not pay for a dependency they never use.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Probes and scrapes evaluate no flags: no context, no token check for them.
        if scope["type"] != "http" or scope["path"].startswith(UNTARGETED_PATHS):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        # The token is checked here because that may await a key fetch; a flag read
        # cannot await.
        targeting = RequestTargeting(request, await principal_if_valid(request))

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and targeting.cookie is not None:
                MutableHeaders(scope=message).append("set-cookie", targeting.cookie)
            await send(message)

        # Set in the request's task: the handler, and sync handlers' threads, see it.
        reset = _request_targeting.set(targeting)
        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            _request_targeting.reset(reset)
