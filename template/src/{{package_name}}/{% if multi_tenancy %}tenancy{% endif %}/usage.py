"""Usage per tenant: counted in memory, added to the database in batches, held to quotas.

Counting a request costs a dictionary update. Every ``APP_TENANCY__USAGE_FLUSH_SECONDS``
(5 s) each process adds what it counted to ``tenant_usage`` in one transaction, an upsert
per tenant, UTC day and meter: usage costs no write per request. A batch that fails is
kept and added with the next one; counts of a tenant deleted meanwhile are dropped. The
last batch is written at shutdown.

Quotas (``APP_TENANCY__QUOTAS``, per plan; a tenant's own limits override them). A request
past its tenant's ``requests_per_day`` is refused with 429 and ``Retry-After`` (the seconds
to the next UTC midnight). A process knows the database's count as of its last batch and
adds its own since, so in one process a quota trips exactly at the limit; with several,
each learns of the others' requests up to one interval late, and a tenant can get that
many requests past its quota. Row quotas are checked when a session writes new rows
(isolation.py).
"""

import asyncio
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Executable

from ..core.database import conflict_insert
from ..core.errors import NotFoundError, ProblemError

# From the module that imports every slice's models: tenant_scoped_models() sees them all
# in a process that imported no route (a CLI command).
from ..models import Base
from .models import METER_LENGTH, Tenant, UsageCount, tenant_scoped_models
from .schemas import MeterUsage, TenantUsage
from .settings import Quotas

logger = structlog.stdlib.get_logger(__name__)

# The meter every resolved request counts on.
REQUESTS = "requests"
# A lowercase word; at most METER_LENGTH long (checked apart: no braces in the pattern).
METER_PATTERN = re.compile(r"[a-z][a-z0-9_.-]*")
# Distinct meters a process counts: names come from code, but a meter named after data
# (a user id) would grow the table and this process without end.
MAX_METERS = 100
# Counts a process holds while the database is away; past it, new counts are dropped.
MAX_PENDING = 100_000
# The longest period one usage query covers.
MAX_PERIOD_DAYS = 366

Key = tuple[str, date, str]


def utc_today() -> date:
    return datetime.now(UTC).date()


def seconds_to_next_day() -> int:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, int((midnight - now).total_seconds()) + 1)


class UsageObserver:
    """Told of usage as it is counted (the metrics slice's observer labels it)."""

    def counted(self, tenant: str, meter: str, amount: int) -> None:
        """``amount`` more of ``meter`` for ``tenant``."""

    def refused(self, quota: str) -> None:
        """A request or a write refused by ``quota`` (requests_per_day, rows)."""

    def batch_failed(self) -> None:
        """A batch could not be stored (kept for the next one)."""


def _add(dialect: str, key: Key, amount: int) -> Executable:
    """Adds ``amount`` to the count under ``key``, creating it at ``amount``."""
    tenant, day, meter = key
    statement = conflict_insert(dialect)(UsageCount).values(
        tenant_id=tenant, day=day, meter=meter, count=amount
    )
    return statement.on_conflict_do_update(
        index_elements=["tenant_id", "day", "meter"],
        set_={"count": UsageCount.count + statement.excluded.count},
    )


def _matching(keys: Iterable[Key]) -> ColumnElement[bool]:
    return or_(
        *(
            and_(UsageCount.tenant_id == tenant, UsageCount.day == day, UsageCount.meter == meter)
            for tenant, day, meter in keys
        )
    )


class UsageMeter:
    """This process's usage counts; on ``app.state.tenant_usage``."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], observer: UsageObserver | None = None
    ) -> None:
        # Sessions bound to no tenant: the counts are the platform's, not a tenant's rows.
        self._sessions = sessions
        self._observer = observer or UsageObserver()
        self._pending: Counter[Key] = Counter()
        # The batch being written, still counted by used_today() until it is stored.
        self._writing: Counter[Key] = Counter()
        # The database's counts as of this process's last batch (or first read), today's.
        self._stored: dict[Key, int] = {}
        self._meters = {REQUESTS}
        self._one_batch_at_a_time = asyncio.Lock()

    def record(self, tenant: str, meter: str = REQUESTS, amount: int = 1) -> None:
        """Counts ``amount`` of ``meter`` for ``tenant`` today. Raises ValueError for a
        meter name that is not one (``[a-z][a-z0-9_.-]*``, at most 64) or one past the
        100 a process counts, and for a negative amount."""
        if meter not in self._meters:
            if len(meter) > METER_LENGTH or not METER_PATTERN.fullmatch(meter):
                raise ValueError(f"{meter!r} is not a meter name ([a-z][a-z0-9_.-]*, <= 64)")
            if len(self._meters) >= MAX_METERS:
                raise ValueError(f"more than {MAX_METERS} meters: {meter!r} is not counted")
            self._meters.add(meter)
        if amount < 0:
            raise ValueError(f"a usage amount is 0 or more, not {amount}")
        key = (tenant, utc_today(), meter)
        if key not in self._pending and len(self._pending) >= MAX_PENDING:
            logger.warning("usage not counted: too many counts wait to be stored", meter=meter)
            return
        self._pending[key] += amount
        self._observer.counted(tenant, meter, amount)

    def unstored(self) -> list[tuple[Key, int]]:
        """What this process counted that the database does not hold yet."""
        return [*self._writing.items(), *self._pending.items()]

    def refused(self, quota: str) -> None:
        """Notes a request or a write refused by ``quota``."""
        self._observer.refused(quota)

    async def used_today(self, tenant: str, meter: str = REQUESTS) -> int:
        """``tenant``'s use of ``meter`` today: stored, being stored and counted here."""
        key = (tenant, utc_today(), meter)
        if key not in self._stored:
            async with self._sessions() as session:
                stored = await session.scalar(select(UsageCount.count).where(_matching([key])))
            self._stored.setdefault(key, stored or 0)
        return self._stored[key] + self._writing[key] + self._pending[key]

    async def flush(self) -> None:
        """Adds what was counted to the database; on failure keeps it for the next time."""
        async with self._one_batch_at_a_time:
            self._writing, self._pending = +self._pending, Counter()
            if not self._writing:
                return
            try:
                stored = await self._store(self._writing)
            except Exception as exc:
                logger.warning(
                    "usage not stored; kept for the next batch",
                    error=repr(exc),
                    counts=len(self._writing),
                )
                self._observer.batch_failed()
                self._pending.update(self._writing)
                self._writing = Counter()
                return
            self._writing = Counter()
            today = utc_today()
            self._stored = {key: count for key, count in self._stored.items() if key[1] >= today}
            self._stored.update((key, count) for key, count in stored.items() if key[1] >= today)

    async def _store(self, batch: Counter[Key]) -> dict[Key, int]:
        async with self._sessions() as session, session.begin():
            tenants = {tenant for tenant, _, _ in batch}
            existing = set(await session.scalars(select(Tenant.id).where(Tenant.id.in_(tenants))))
            if tenants - existing:
                logger.info("usage of deleted tenants dropped", tenants=sorted(tenants - existing))
            kept = [key for key in batch if key[0] in existing]
            dialect = session.get_bind().dialect.name
            # In one order in every process: two batches adding to the same rows lock
            # them in the same order, never waiting for each other (no deadlock).
            for key in sorted(kept):
                await session.execute(_add(dialect, key, batch[key]))
            if not kept:
                return {}
            rows = await session.execute(
                select(
                    UsageCount.tenant_id, UsageCount.day, UsageCount.meter, UsageCount.count
                ).where(_matching(kept))
            )
            return {(tenant, day, meter): count for tenant, day, meter, count in rows}

    async def run(self, interval: float) -> None:
        """Stores a batch every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()


class PeriodError(ProblemError):
    status = 422


async def usage_report(
    tenant_id: str,
    since: date | None,
    until: date | None,
    *,
    platform: AsyncSession,
    tenants_own: AsyncSession,
    meter: UsageMeter,
    quotas: Quotas,
) -> TenantUsage:
    """``tenant_id``'s usage from ``since`` to ``until`` (UTC days, both included; by
    default this month so far): stored counts, plus what this process counted since its
    last batch; its rows, counted through ``tenants_own`` (a session bound to it)."""
    until = until or utc_today()
    since = since or until.replace(day=1)
    if since > until:
        raise PeriodError(f"since ({since}) is after until ({until})", field="since")
    if (until - since).days >= MAX_PERIOD_DAYS:
        raise PeriodError(f"a period is at most {MAX_PERIOD_DAYS} days", field="since")
    if await platform.get(Tenant, tenant_id) is None:
        raise NotFoundError(f"no tenant {tenant_id!r}")
    rows = await platform.execute(
        select(UsageCount.day, UsageCount.meter, UsageCount.count)
        .where(UsageCount.tenant_id == tenant_id, UsageCount.day.between(since, until))
        .order_by(UsageCount.day, UsageCount.meter)
    )
    counts: Counter[tuple[date, str]] = Counter({(day, name): count for day, name, count in rows})
    for (tenant, day, name), amount in meter.unstored():
        if tenant == tenant_id and since <= day <= until:
            counts[(day, name)] += amount
    totals: Counter[str] = Counter()
    for (_, name), count in counts.items():
        totals[name] += count
    kept = {}
    for name, model in tenant_scoped_models().items():
        table = Base.metadata.tables[name]
        counted = select(func.count()).select_from(table)
        if "tenant_id" in table.c:
            # Tenants share the table (row isolation): the filter for SQLite; on
            # PostgreSQL row-level security holds it too. Elsewhere the table is the
            # tenant's own, reached through the model's bind.
            counted = counted.where(table.c.tenant_id == tenant_id)
        kept[name] = await tenants_own.scalar(counted, bind_arguments={"mapper": model}) or 0
    return TenantUsage(
        tenant_id=tenant_id,
        since=since,
        until=until,
        totals=dict(sorted(totals.items())),
        days=[
            MeterUsage(day=day, meter=name, count=count)
            for (day, name), count in sorted(counts.items())
        ],
        rows=kept,
        quotas=quotas,
    )
