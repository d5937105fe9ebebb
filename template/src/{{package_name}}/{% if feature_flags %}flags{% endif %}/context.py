"""The evaluation context of a request, set once so every flag read in it uses it.

``flag_context`` runs as a dependency of every route. The targeting key is the caller's
subject when a valid token came with the request, otherwise a stable anonymous id from
the ``X-Anonymous-Id`` header or the ``anonymous_id`` cookie, so percentage rollouts stay
sticky for visitors too. OpenFeature's transaction context carries it to any code the
request runs: handlers and services call the client without passing the context along.

The context is built on the request's first flag read, not before: a request that reads
no flag costs a context variable, and only a new visitor who was served a flag gets the
cookie. A flag read after the response has started (a background task, a streaming
body) still gets a context, but its new id can no longer reach the visitor as a cookie.
"""

import re
import threading
import uuid
from contextvars import ContextVar
from typing import Any

from fastapi import Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from openfeature.evaluation_context import EvaluationContext
from openfeature.transaction_context import ContextVarsTransactionContextPropagator

from ..core.auth.dependencies import verify_request_token
from ..core.auth.principal import Principal
from ..core.errors import ProblemError

ANONYMOUS_HEADER = "x-anonymous-id"
ANONYMOUS_COOKIE = "anonymous_id"
# A caller-chosen id becomes a targeting key: keep it short and printable.
_VALID_ANONYMOUS_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
UNTARGETED_PATHS = ("/health/", "/metrics")
# Claims copied into the context when the token has them (targeting by plan, country).
COPIED_CLAIMS = ("plan", "country")


def context_for(principal: Principal | None, anonymous_id: str) -> EvaluationContext:
    if principal is None:
        return EvaluationContext(anonymous_id, {"anonymous": True})
    attributes: dict[str, Any] = {
        "anonymous": False,
        "groups": sorted(principal.groups),
        "roles": sorted(principal.roles),
    }
    if principal.tenant is not None:
        attributes["tenant"] = principal.tenant
    for claim in COPIED_CLAIMS:
        value = principal.claims.get(claim)
        if isinstance(value, str):
            attributes[claim] = value
    return EvaluationContext(principal.subject, attributes)


def _anonymous_id(request: Request) -> str | None:
    # An invalid header does not hide a valid cookie.
    for candidate in (request.headers.get(ANONYMOUS_HEADER), request.cookies.get(ANONYMOUS_COOKIE)):
        if candidate and _VALID_ANONYMOUS_ID.fullmatch(candidate):
            return candidate
    return None


async def _principal(request: Request) -> Principal | None:
    """The caller, when a valid bearer token came with the request.

    Lenient, unlike ``OptionalPrincipalDep``: this runs for every route, and a stale or
    unverifiable token must not turn a public one (health, metrics) into a 401. Routes
    that need the caller still verify the token themselves and reject it there.
    """
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return await verify_request_token(request, token)
    except ProblemError:
        return None


class RequestTargeting:
    """Who the flag reads of one request target, worked out on the first of them."""

    def __init__(self, request: Request, response: Response, principal: Principal | None):
        self._request = request
        self._response = response
        self._principal = principal
        self._context: EvaluationContext | None = None
        # Sync handlers run in worker threads: two of them must not mint two ids.
        self._lock = threading.Lock()

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
                self._response.set_cookie(
                    ANONYMOUS_COOKIE,
                    anonymous_id,
                    max_age=365 * 24 * 3600,
                    httponly=True,
                    samesite="lax",
                )
        return context_for(self._principal, anonymous_id)


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


async def flag_context(request: Request, response: Response) -> None:
    # Probes and scrapes evaluate no flags: no context, no token check for them.
    if request.url.path.startswith(UNTARGETED_PATHS):
        return
    # async: set in the request's own context, it is seen by sync handlers too. The
    # token is checked here because that may await a key fetch; a flag read cannot.
    _request_targeting.set(RequestTargeting(request, response, await _principal(request)))
