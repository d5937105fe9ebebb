"""Which tenant a request acts for, from the sources the settings name.

``TenantResolutionMiddleware`` reads every configured source: the verified token's
tenant claim, the Host's subdomain under a base domain, and the gateway header (only
from a trusted gateway's connection; anyone else's is ignored and logged). Sources that
name different tenants refuse the request (400): a token for one tenant is no key to
another's host. A named tenant that does not exist, or is suspended, is refused (403).
Otherwise the request runs as the tenant's: ``core.tenant.current_tenant`` is set (the
sessions, flag targeting and the caller's code read it), log lines carry ``tenant``, and
the request's span gets ``tenant.id``.

A request that names no tenant acts for ``APP_TENANCY__DEFAULT_TENANT`` when that is set;
otherwise it passes without one: probes, the tenant admin API and public routes need
none, and the routes that do (``TenantDep``) refuse it there.
"""

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.auth.dependencies import principal_if_valid
from ..core.auth.principal import Principal
from ..core.database import RETRY_AFTER_SECONDS, database_problem
from ..core.errors import ProblemError, problem_response
from ..core.middleware import connection_peer
from ..core.tenant import current_tenant
from .directory import TenantDirectory
from .settings import Quotas, TenancySettings
from .usage import UsageMeter, seconds_to_next_day

logger = structlog.stdlib.get_logger(__name__)

# Where the resolved tenant is kept in the request's scope state.
TENANT_STATE = "tenant"

# Called with the tenant of each resolved request (the span annotation).
TenantObserver = Callable[[str], None]


class TenantRefusedError(ProblemError):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers)
        self.status = status


class TenantResolver:
    """Works out a request's tenant; on ``app.state.tenant_resolver``."""

    def __init__(
        self,
        settings: TenancySettings,
        directory: TenantDirectory,
        usage: UsageMeter | None = None,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.usage = usage
        self._header = settings.header.lower().encode("latin-1")
        self._gateways = tuple(settings.trusted_gateways)
        self._domains = tuple(f".{domain}" for domain in settings.base_domains)

    def _from_subdomain(self, scope: Scope) -> str | None:
        host = next((value for name, value in scope["headers"] if name == b"host"), b"")
        name = host.decode("latin-1").lower().rsplit(":", 1)[0] if b"]" not in host else ""
        for domain in self._domains:
            if name.endswith(domain):
                label = name[: -len(domain)]
                # Only the label right under the domain: "a.b.api.example.com" names none.
                return label if label and "." not in label else None
        return None

    def _from_header(self, scope: Scope) -> str | None:
        value: bytes | None = next(
            (value for name, value in scope["headers"] if name == self._header), None
        )
        if value is None:
            return None
        peer = connection_peer(scope) or ""
        try:
            trusted = any(ipaddress.ip_address(peer) in network for network in self._gateways)
        except ValueError:  # no address (a test client's "testclient")
            trusted = False
        if not trusted:
            logger.warning("tenant header ignored: not from a trusted gateway", peer=peer)
            return None
        return value.decode("latin-1")

    async def named(self, scope: Scope) -> dict[str, str]:
        """The tenant each source names, by source."""
        named: dict[str, str] = {}
        for source in self.settings.sources:
            tenant: str | None
            if source == "token":
                principal = await principal_if_valid(HTTPConnection(scope))
                tenant = principal.tenant if principal is not None else None
            elif source == "subdomain":
                tenant = self._from_subdomain(scope)
            else:
                tenant = self._from_header(scope)
            if tenant:
                named[source] = tenant
        return named

    async def resolve(self, scope: Scope) -> str | None:
        """The request's tenant, None if it names none; raises ``TenantRefusedError``."""
        return await self.decide(await self.named(scope))

    async def decide(self, named: dict[str, str]) -> str | None:
        """The tenant the sources name together (see resolve())."""
        tenants = set(named.values())
        if not tenants:
            if self.settings.default_tenant is None:
                return None
            tenants = {self.settings.default_tenant}
        if len(tenants) > 1:
            which = ", ".join(f"{tenant!r} ({source})" for source, tenant in named.items())
            raise TenantRefusedError(400, f"the request names more than one tenant: {which}")
        (tenant,) = tenants
        entry = await self.directory.lookup(tenant)
        if entry is None:
            raise TenantRefusedError(403, f"tenant {tenant!r} does not exist")
        if not entry.active:
            raise TenantRefusedError(403, f"tenant {tenant!r} is suspended")
        return tenant

    def quotas_of(self, tenant: str) -> Quotas:
        """The quotas that hold ``tenant``: its plan's, each overridden by its own."""
        entry = self.directory.cached(tenant)
        if entry is None:
            return Quotas()
        plan = self.settings.quotas.get(entry.plan, Quotas())
        return Quotas(
            requests_per_day=self._requests_per_day(tenant),
            rows={**plan.rows, **entry.limits.rows},
        )

    def _requests_per_day(self, tenant: str) -> int | None:
        """``tenant``'s daily request quota, without building its Quotas: asked on every
        request."""
        entry = self.directory.cached(tenant)
        if entry is None:
            return None
        plan = self.settings.quotas.get(entry.plan)
        return entry.limits.requests_per_day or (plan.requests_per_day if plan else None)

    async def count_request(self, tenant: str) -> None:
        """Counts a request of ``tenant``; refuses it (429) past its daily quota."""
        if self.usage is None:
            return
        quota = self._requests_per_day(tenant)
        if quota is not None and await self.usage.used_today(tenant) >= quota:
            self.usage.refused("requests_per_day")
            raise TenantRefusedError(
                429,
                f"tenant {tenant!r} has used its {quota} requests of today (UTC)",
                headers={"Retry-After": str(seconds_to_next_day())},
            )
        self.usage.record(tenant)


class TenantResolutionMiddleware:
    def __init__(self, app: ASGIApp, observers: Sequence[TenantObserver] = ()) -> None:
        self.app = app
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resolver: TenantResolver | None = getattr(scope["app"].state, "tenant_resolver", None)
        if (
            scope["type"] not in {"http", "websocket"}
            or resolver is None
            or scope["path"].startswith(tuple(resolver.settings.untenanted_paths))
        ):
            await self.app(scope, receive, send)
            return
        try:
            tenant = await resolver.resolve(scope)
            if tenant is not None:
                await resolver.count_request(tenant)
        except TenantRefusedError as refusal:
            logger.info("tenant refused", reason=refusal.detail, status=refusal.status)
            response = problem_response(
                refusal.status, refusal.detail, instance=scope["path"], headers=refusal.headers
            )
            await _answer(scope, receive, send, response)
            return
        except Exception as exc:
            detail = database_problem(scope["app"], exc)
            if detail is None:
                raise
            response = problem_response(
                503,
                detail,
                instance=scope["path"],
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            await _answer(scope, receive, send, response)
            return
        if tenant is None:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[TENANT_STATE] = tenant
        structlog.contextvars.bind_contextvars(tenant=tenant)
        for observe in self.observers:
            observe(tenant)
        reset = current_tenant.set(tenant)
        try:
            await self.app(scope, receive, send)
        finally:
            current_tenant.reset(reset)


async def admit_connection(connection: HTTPConnection, principal: Principal | None) -> None:
    """Adds the tenant claim of a token a WebSocket sent after its handshake (the GraphQL
    slice's ``connection_init``; browsers cannot send headers with a WebSocket).

    The claim is one more source beside what the handshake named: it must agree with
    them, and name an active tenant. The connection's task (and the operations it
    starts) then act for that tenant. Raises ``TenantRefusedError``.
    """
    resolver: TenantResolver = connection.app.state.tenant_resolver
    claimed = principal.tenant if principal is not None else None
    if claimed is None or "token" not in resolver.settings.sources:
        return
    if claimed == current_tenant.get():
        return
    # Beside the handshake's own sources (its Authorization header's token included).
    named = {**await resolver.named(connection.scope), "connection_init token": claimed}
    tenant = await _unavailable_as_refusal(connection, resolver.decide(named))
    if tenant is not None:
        # Set, never reset: the connection's task ends with the connection.
        current_tenant.set(tenant)
        structlog.contextvars.bind_contextvars(tenant=tenant)


async def admit_operation(connection: HTTPConnection, principal: Principal | None) -> None:
    """For each operation a WebSocket starts (the GraphQL slice): its tenant must still
    be active, and the operation counts as a request, against the daily quota too, as an
    HTTP request does. Raises ``TenantRefusedError``. Subscriptions already running go on
    until the connection closes."""
    tenant = current_tenant.get()
    if tenant is None:
        return
    resolver: TenantResolver = connection.app.state.tenant_resolver
    await _unavailable_as_refusal(connection, _screen_operation(resolver, tenant))


async def _screen_operation(resolver: TenantResolver, tenant: str) -> None:
    entry = await resolver.directory.lookup(tenant)
    if entry is None:
        raise TenantRefusedError(403, f"tenant {tenant!r} does not exist")
    if not entry.active:
        raise TenantRefusedError(403, f"tenant {tenant!r} is suspended")
    await resolver.count_request(tenant)


async def _unavailable_as_refusal(
    connection: HTTPConnection, work: Awaitable[str | None]
) -> str | None:
    """``work``'s result; a database that does not answer is a 503 refusal."""
    try:
        return await work
    except TenantRefusedError:
        raise
    except Exception as exc:
        detail = database_problem(connection.app, exc)
        if detail is None:
            raise
        raise TenantRefusedError(503, detail) from exc


async def _answer(scope: Scope, receive: Receive, send: Send, response: Any) -> None:
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    # A WebSocket handshake: answered as HTTP where the server can, closed otherwise.
    if "websocket.http.response" in scope.get("extensions", {}):
        await response(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": 1008})
