"""The evaluation context of a request, set once so every flag read in it uses it.

``flag_context`` runs as a dependency of every route. The targeting key is the caller's
subject when a valid token came with the request, otherwise a stable anonymous id from
the ``X-Anonymous-Id`` header or the ``anonymous_id`` cookie (set on the response when
new), so percentage rollouts stay sticky for visitors too. OpenFeature's transaction
context carries it to any code the request runs: handlers and services call the client
without passing the context along.
"""

import re
import uuid
from typing import Any

from fastapi import Request, Response
from fastapi.security.utils import get_authorization_scheme_param
from openfeature import api
from openfeature.evaluation_context import EvaluationContext

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


async def flag_context(request: Request, response: Response) -> None:
    # Probes and scrapes evaluate no flags: no context, no token check, no cookie for them.
    if request.url.path.startswith(UNTARGETED_PATHS):
        return
    # async: set in the request's own context, it is seen by sync handlers too.
    principal = await _principal(request)
    anonymous_id = _anonymous_id(request)
    if anonymous_id is None:
        anonymous_id = uuid.uuid4().hex
        if principal is None:
            response.set_cookie(
                ANONYMOUS_COOKIE,
                anonymous_id,
                max_age=365 * 24 * 3600,
                httponly=True,
                samesite="lax",
            )
    api.set_transaction_context(context_for(principal, anonymous_id))
