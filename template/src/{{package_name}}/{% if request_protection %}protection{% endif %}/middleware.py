"""The protection slice's ASGI middleware.

:class:`ProtectionMiddleware` sits at the edge (right inside the access log): it refuses
what it can from the request line and headers alone, before any body is read, counts the
request against the default rate limit, bounds how long the body may take, and adds the
security and RateLimit headers to every answer. :class:`JsonLimitsMiddleware` sits with
the other slices' middleware, inside the body limit, and checks the shape of JSON bodies.
"""

import hmac
import ipaddress
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.auth.dependencies import principal_if_valid
from ..core.errors import problem_response
from ..core.middleware import read_body
from ..core.tenant import current_tenant
from .anomaly import matched_rules
from .filters import Refusal, RequestFilters, json_refusal
from .headers import SecurityHeaders, docs_policy
from .limiter import Decision, Quota, RateLimiter, policy_header_values, quotas
from .observer import ProtectionObserver
from .policies import route_limits
from .rules import RuleSet
from .settings import LimitKey, ProtectionSettings

logger = structlog.stdlib.get_logger(__name__)

# The rate limit decisions made for a request, in its scope: the edge's and its route's.
DECISIONS = "protection.decisions"
# A docs page's policy until the page has been served once (a HEAD, a refusal).
DOCS_WITHOUT_HASHES = docs_policy(b"")


class Protection:
    """Everything the middleware and the route limits decide with, on ``app.state``."""

    def __init__(
        self,
        settings: ProtectionSettings,
        limiter: RateLimiter,
        observer: ProtectionObserver,
        docs_paths: frozenset[str],
        service_admin_role: str,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.observer = observer
        self.filters = RequestFilters(settings.filters)
        self.rules = RuleSet(settings.deny, settings.rules_file)
        self.headers = SecurityHeaders(settings.headers)
        self.default_quotas = quotas("default", settings.rate_limits.default)
        self.route_limits = route_limits(settings.rate_limits.routes)
        self.docs_paths = docs_paths
        self.docs_policies: dict[str, bytes] = {}
        self.in_progress: Counter[str] = Counter()
        limits = settings.rate_limits
        self.exempt_paths = tuple(limits.exempt_paths)
        exempt = limits.exempt_roles
        self.exempt_roles = frozenset([service_admin_role] if exempt is None else exempt)
        private = settings.private
        self.private_paths = tuple(private.paths)
        self.private_token = (
            f"Bearer {private.token.get_secret_value()}".encode()
            if private.token is not None
            else None
        )

    def refuse(self, scope: Scope, refusal: Refusal) -> ASGIApp:
        self.note_refusal(scope, refusal, refusal.status)
        return problem_response(
            refusal.status, refusal.detail, instance=scope["path"], headers=refusal.headers
        )

    def note_refusal(self, scope: Scope, refusal: Refusal, status: int) -> None:
        """Counts and logs a refusal, answered with ``status``."""
        self.observer.refused(refusal.reason)
        logger.warning(
            "request refused",
            reason=refusal.reason,
            status=status,
            client=client_address(scope),
            detail=refusal.detail,
        )

    async def key_for(self, scope: Scope, key: LimitKey) -> tuple[str, bool]:
        """The key requests are counted under (``user:<subject>``, ``tenant:<id>``,
        ``client:<ip>`` or ``route``), and whether the caller is exempt by role."""
        if key == "route":
            return "route", False
        principal = None
        if key in ("user", "tenant"):
            principal = await principal_if_valid(HTTPConnection(scope))
        exempt = principal is not None and bool(self.exempt_roles & principal.roles)
        if key == "tenant":
            # The tenant resolved for the request (route dependencies run after the
            # tenancy slice resolved it); at the edge, the token's tenant claim.
            tenant = current_tenant.get() or (principal.tenant if principal else None)
            if tenant is not None:
                return f"tenant:{tenant}", exempt
        elif principal is not None:
            # A subject is unique within its tenant only: tenants' users are kept apart.
            if principal.tenant is not None:
                return f"user:{principal.tenant}/{principal.subject}", exempt
            return f"user:{principal.subject}", exempt
        return f"client:{client_address(scope)}", exempt

    async def limit(
        self, scope: Scope, policy: str, policy_quotas: tuple[Quota, ...], key: str
    ) -> Refusal | None:
        decision = await self.limiter.decide(policy, policy_quotas, key)
        scope.setdefault(DECISIONS, []).append(decision)
        if decision.allowed:
            return None
        if decision.outage:
            return Refusal(
                503,
                "limiter_outage",
                "rate limits cannot be checked; retry later",
                {"Retry-After": str(max(1, int(self.settings.rate_limits.outage_retry_seconds)))},
            )
        quota = decision.refused_by or policy_quotas[0]
        return Refusal(
            429,
            "rate_limit",
            f"rate limit {quota.name} ({quota.item.amount} per {quota.window_seconds} s) exceeded",
            {"Retry-After": str(decision.retry_after)},
        )

    def private_allowed(self, scope: Scope) -> bool:
        private = self.settings.private
        if not private.clients and self.private_token is None:
            return True
        if self.private_token is not None:
            for name, value in scope["headers"]:
                if name == b"authorization" and hmac.compare_digest(value, self.private_token):
                    return True
        client = client_address(scope)
        if not private.clients or client is None:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in private.clients)

    @contextmanager
    def counted_in_progress(self, client: str) -> Iterator[bool]:
        """Counts a request of ``client`` while it runs; yields whether it is within the
        cap."""
        self.in_progress[client] += 1
        try:
            yield self.in_progress[client] <= self.settings.abuse.max_concurrent_per_client
        finally:
            self.in_progress[client] -= 1
            if not self.in_progress[client]:
                del self.in_progress[client]


def client_address(scope: Scope) -> str | None:
    """The client's address: the peer's, or the one trusted proxies forwarded."""
    client = scope.get("client")
    return str(client[0]) if client else None


def _header(scope: Scope, wanted: bytes) -> str:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == wanted:
            return value.decode("latin-1")
    return ""


class ProtectionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        protection: Protection = scope["app"].state.protection
        path: str = scope["path"]
        docs_page = path in protection.docs_paths
        send = _with_headers(protection, scope, send, docs_page)
        refusal = self._screen(protection, scope)
        if refusal is not None:
            await protection.refuse(scope, refusal)(scope, receive, send)
            return
        client = client_address(scope) or "unknown"
        with protection.counted_in_progress(client) as within_cap:
            if not within_cap:
                refusal = Refusal(
                    429,
                    "concurrency",
                    f"more than {protection.settings.abuse.max_concurrent_per_client} "
                    "requests in progress from this client",
                    {"Retry-After": "1"},
                )
            else:
                refusal = await self._rate_limit(protection, scope)
            if refusal is not None:
                await protection.refuse(scope, refusal)(scope, receive, send)
                return
            if _declares_body(scope):
                receive = _body_within(protection, scope, receive)
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket's handshake is screened as a request is, and counted as one against
        the rate limits (each connection attempt one hit, routes' policies for GET): a
        refusal is its answer, a problem document with the status, where the server can
        send one (uvicorn can), and a closed handshake (403) where it cannot. What then runs
        over an open connection is its endpoint's to bound (GraphQL: operations per
        connection); it is not counted as requests in progress, which a subscription
        open for hours would hold against the client's own requests."""
        protection: Protection = scope["app"].state.protection
        refusal = self._screen(protection, scope)
        if refusal is None:
            refusal = await self._rate_limit(protection, scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            send = _with_headers(protection, scope, send, docs_page=False)
            await protection.refuse(scope, refusal)(scope, receive, send)
            return
        protection.note_refusal(scope, refusal, 403)
        await send({"type": "websocket.close", "code": 1008})

    async def _rate_limit(self, protection: Protection, scope: Scope) -> Refusal | None:
        """The default limit, then the limits of the route the request is for (none when
        limits are off or the path is exempt)."""
        if not protection.settings.rate_limits.enabled or scope["path"].startswith(
            protection.exempt_paths
        ):
            return None
        key, exempt = await protection.key_for(scope, "user")
        if exempt:
            return None
        refusal = await protection.limit(scope, "default", protection.default_quotas, key)
        # A WebSocket's handshake is a GET.
        method, path = scope.get("method", "GET"), scope["path"]
        for route in protection.route_limits:
            if refusal is not None:
                break
            if route.matches(method, path):
                route_key, _ = await protection.key_for(scope, route.key)
                refusal = await protection.limit(scope, route.name, route.quotas, route_key)
        return refusal

    def _screen(self, protection: Protection, scope: Scope) -> Refusal | None:
        """What the request line and headers alone say against the request."""
        path: str = scope["path"]
        if path.startswith(protection.private_paths) and not protection.private_allowed(scope):
            return Refusal(404, "private_path", "not found")
        refusal = protection.filters.check(scope)
        if refusal is not None:
            return refusal
        user_agent = _header(scope, b"user-agent")
        matched = protection.rules.current().match(client_address(scope), user_agent, path)
        if matched is not None:
            return Refusal(403, "deny_rule", f"refused by a deny rule on the {matched}")
        if not protection.settings.anomaly_scoring:
            return None
        rules = matched_rules(scope, user_agent)
        if not rules:
            return None
        score = sum(rule.score for rule in rules)
        for rule in rules:
            protection.observer.anomaly(rule.name)
        logger.warning(
            "anomalous request",
            score=score,
            rules=[rule.name for rule in rules],
            client=client_address(scope),
        )
        block = protection.settings.block_anomaly_score
        if block is not None and score >= block:
            return Refusal(403, "anomaly", "refused as anomalous")
        return None


def _with_headers(protection: Protection, scope: Scope, send: Send, docs_page: bool) -> Send:
    """``send`` adding the security headers, and the RateLimit headers of the decisions
    made for the request, to the response."""
    path: str = scope["path"]
    held: Message | None = None
    page: list[bytes] = []

    async def send_with_headers(message: Message) -> None:
        nonlocal held
        # A refused WebSocket handshake is answered with the same messages, prefixed.
        if message["type"] in {"http.response.start", "websocket.http.response.start"}:
            headers = list(message.get("headers", []))
            headers += _rate_limit_headers(scope.get(DECISIONS, ()))
            if (
                docs_page
                and path not in protection.docs_policies
                and scope["method"] == "GET"
                and message["status"] == 200
            ):
                # The first time a docs page is served, its policy comes from its body.
                held = {**message, "headers": headers}
                return
            policy = protection.docs_policies.get(path, DOCS_WITHOUT_HASHES) if docs_page else None
            message = {
                **message,
                "headers": protection.headers.for_response(scope["scheme"], headers, policy),
            }
        elif held is not None and message["type"] == "http.response.body":
            page.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(page)
            policy = protection.docs_policies.setdefault(path, docs_policy(body))
            start = {
                **held,
                "headers": protection.headers.for_response(
                    scope["scheme"], held["headers"], policy
                ),
            }
            held = None
            await send(start)
            message = {"type": "http.response.body", "body": body}
        await send(message)

    return send_with_headers


def _rate_limit_headers(decisions: list[Decision] | tuple[()]) -> list[tuple[bytes, bytes]]:
    usage = [item for decision in decisions for item in decision.usage]
    if not usage:
        return []
    policy, remaining = policy_header_values(usage)
    return [(b"ratelimit-policy", policy), (b"ratelimit", remaining)]


def _declares_body(scope: Scope) -> bool:
    """Whether the request says a body follows (HTTP/1.1 sends none otherwise)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"content-length":
            return value.strip() not in {b"0", b""}
        if name == b"transfer-encoding":
            return True
    return False


def _body_within(protection: Protection, scope: Scope, receive: Receive) -> Receive:
    """``receive`` that answers 408 when the body has not fully arrived within the
    body timeout of the first read: a client trickling its body cannot hold a worker's
    request slot."""
    seconds = protection.settings.abuse.body_timeout_seconds
    deadline: float | None = None
    complete = False

    async def receive_in_time() -> Message:
        nonlocal deadline, complete
        if complete:
            # After the body, receive() waits for the disconnect (a streamed response
            # does): no deadline.
            return await receive()
        if deadline is None:
            deadline = anyio.current_time() + seconds
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as timer:
            message = await receive()
        if timer.cancelled_caught:
            detail = f"the request body did not arrive within {seconds:g} s"
            refusal = Refusal(408, "slow_body", detail)
            protection.note_refusal(scope, refusal, refusal.status)
            raise HTTPException(refusal.status, refusal.detail)
        complete = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return receive_in_time


class JsonLimitsMiddleware:
    """Answers 400 to JSON bodies nested deeper or with longer arrays than allowed,
    before the route parses them (a deep document costs the parser and the validator
    far more than its size suggests)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        protection: Protection = scope["app"].state.protection
        body, receive = await read_body(receive)
        refusal = json_refusal(body, protection.settings.filters) if body else None
        if refusal is not None:
            await protection.refuse(scope, refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)
