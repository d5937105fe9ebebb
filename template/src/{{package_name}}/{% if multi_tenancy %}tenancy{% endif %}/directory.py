"""What a process knows of the tenants: looked up on a request's first need, kept briefly.

Each resolved request needs its tenant's status. Reading the registry on every request
would add a query to each; a process keeps what it read for
``APP_TENANCY__DIRECTORY_TTL_SECONDS`` (5 s), unknown ids included, in a bounded map. A
change made through this process (the admin API, the CLI in-process) is forgotten at
once; one made elsewhere applies here within the TTL.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pydantic import JsonValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .models import Tenant
from .schemas import TenantConfiguration
from .settings import Quotas

# Entries kept at most: ids come from hosts and headers too, which a client chooses.
DIRECTORY_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class TenantEntry:
    id: str
    active: bool
    plan: str
    # Flag values by key (tenancy/flags.py serves them); read-only.
    features: Mapping[str, JsonValue] = field(default_factory=lambda: MappingProxyType({}))
    # The tenant's own quotas, over its plan's (TenantResolver.quotas_of).
    limits: Quotas = field(default_factory=Quotas)


class TenantDirectory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float) -> None:
        # Sessions bound to no tenant: the registry is no tenant's.
        self._sessions = sessions
        self._ttl = ttl
        self._entries: OrderedDict[str, tuple[float, TenantEntry | None]] = OrderedDict()
        # One read per id at a time: a burst of first requests costs one query.
        self._reads: dict[str, asyncio.Future[TenantEntry | None]] = {}

    async def lookup(self, tenant_id: str) -> TenantEntry | None:
        """The tenant, or None if there is no such tenant. Database errors propagate."""
        cached = self._entries.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        pending = self._reads.get(tenant_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TenantEntry | None] = asyncio.get_running_loop().create_future()
        self._reads[tenant_id] = future
        try:
            entry = await self._read(tenant_id)
        except BaseException as exc:
            future.set_exception(exc)
            # Read by no waiter: do not let asyncio report it as never retrieved.
            future.exception()
            raise
        finally:
            del self._reads[tenant_id]
        future.set_result(entry)
        self._remember(tenant_id, entry)
        return entry

    async def _read(self, tenant_id: str) -> TenantEntry | None:
        async with self._sessions() as session:
            tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        configuration = TenantConfiguration.model_validate(tenant.configuration)
        return TenantEntry(
            id=tenant.id,
            active=tenant.status == "active",
            plan=configuration.plan,
            features=MappingProxyType(configuration.features),
            limits=configuration.limits,
        )

    def cached(self, tenant_id: str) -> TenantEntry | None:
        """What this process last read of ``tenant_id``, however long ago; no query.

        For code that cannot wait for the database (a flag read): on the request path the
        resolution just looked the tenant up, so its entry is current within the TTL.
        """
        cached = self._entries.get(tenant_id)
        return cached[1] if cached is not None else None

    def _remember(self, tenant_id: str, entry: TenantEntry | None) -> None:
        self._entries[tenant_id] = (time.monotonic() + self._ttl, entry)
        self._entries.move_to_end(tenant_id)
        while len(self._entries) > DIRECTORY_SIZE:
            self._entries.popitem(last=False)

    def forget(self, tenant_id: str) -> None:
        """Read ``tenant_id`` again on its next lookup (it just changed here)."""
        self._entries.pop(tenant_id, None)
