"""Isolation below the handlers: a session sees and writes only its tenant's rows.

Every session the service opens (``app.state.sessions``, so ``SessionDep`` and the
slices' own) is bound to the tenant the code runs for (``core.tenant.current_tenant``)
when it is created. Then, without any handler or service filtering:

- every ORM query of a tenant-scoped model (select, ``session.get``, relationship loads,
  ORM-enabled ``update()``/``delete()``) gets ``tenant_id = <tenant>`` added by
  SQLAlchemy's ``with_loader_criteria``; a session bound to no tenant reads no
  tenant-scoped row;
- a new tenant-scoped row gets the session's tenant, and a flush that would write
  another tenant's row (or any, bound to no tenant) is refused;
- on PostgreSQL each transaction starts with ``set_config('app.tenant_id', <tenant>,
  true)``: row-level security (``FORCE``d, so the tables' owner is held too) checks every
  statement against it, raw SQL included. The setting is local to the transaction, so a
  pooled connection carries nothing over to the next one; without it the policies match
  no row.

SQLite has no row-level security: there the ORM is the only guard, and raw SQL through
``session.execute(text(...))`` must filter by tenant itself.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, Table, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, with_loader_criteria

from ..core.errors import ForbiddenError
from ..core.tenant import current_tenant
from .models import TenantScoped

# Where a session keeps the tenant it is bound to.
TENANT = "tenant"
# Where a session finds its tenant's row quotas: (tenant, table) to the rows allowed.
ROW_QUOTA = "row_quota"
RowQuota = Callable[[str, str], int | None]
# Where it finds what to tell of a write a row quota refused (the usage metrics).
ROW_REFUSED = "row_refused"
# The PostgreSQL setting the row-level security policies compare tenant_id with.
TENANT_SETTING = "app.tenant_id"


class TenantRequiredError(RuntimeError):
    """A tenant-scoped row was written by a session bound to no tenant, or to another
    tenant than the row's: a fault in the code, never the client's."""


class TenantSession(Session):
    """The sync session under each ``AsyncSession``; the listeners below are its own."""


def session_tenant(session: Session) -> str | None:
    tenant = session.info.get(TENANT)
    return tenant if isinstance(tenant, str) else None


@event.listens_for(TenantSession, "do_orm_execute")
def _only_the_tenants_rows(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    # Relationship and deferred-column loads inherit the criteria of the query that
    # loaded their parent (propagate_to_loaders), so they are not wrapped again.
    if state.is_column_load or state.is_relationship_load:
        return
    tenant = session_tenant(state.session)
    # The lambda is cached by SQLAlchemy; ``tenant`` becomes a bound parameter. With no
    # tenant, "tenant_id IS NULL" matches no row: the column is NOT NULL.
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda model: model.tenant_id == tenant,
            include_aliases=True,
        )
    )


@event.listens_for(TenantSession, "before_flush")
def _rows_of_the_sessions_tenant(session: Session, *_: object) -> None:
    tenant = session_tenant(session)
    for row in session.new:
        if not isinstance(row, TenantScoped):
            continue
        if tenant is None:
            raise TenantRequiredError(
                f"a new {type(row).__name__} needs a tenant; the session is bound to none"
            )
        if row.tenant_id is None:
            row.tenant_id = tenant
        elif row.tenant_id != tenant:
            raise TenantRequiredError(
                f"a {type(row).__name__} of tenant {row.tenant_id!r} cannot be written "
                f"by a session of tenant {tenant!r}"
            )
    for row in (*session.dirty, *session.deleted):
        if isinstance(row, TenantScoped) and row.tenant_id != tenant:
            raise TenantRequiredError(
                f"a {type(row).__name__} of tenant {row.tenant_id!r} cannot be changed "
                f"by a session of tenant {tenant!r}"
            )
    quota = session.info.get(ROW_QUOTA)
    if tenant is not None and quota is not None:
        _within_row_quotas(session, tenant, quota)


class RowQuotaExceededError(ForbiddenError):
    """A write that would take a tenant past the rows its quota allows in a table."""


def _within_row_quotas(session: Session, tenant: str, quota: RowQuota) -> None:
    """Refuses a flush whose new rows would take ``tenant`` past a row quota.

    Counted before the insert, on the flush's own connection: writes of one tenant that
    run at the same moment may each see the count before the others', and together
    overshoot by at most their number.
    """
    added: Counter[Table] = Counter(
        cast(Table, type(row).__table__)  # type: ignore[attr-defined]
        for row in session.new
        if isinstance(row, TenantScoped)
    )
    for table, count in added.items():
        limit = quota(tenant, table.name)
        if limit is None:
            continue
        kept = session.connection().scalar(
            select(func.count()).select_from(table).where(table.c.tenant_id == tenant)
        )
        if (kept or 0) + count > limit:
            refused = session.info.get(ROW_REFUSED)
            if refused is not None:
                refused()
            raise RowQuotaExceededError(
                f"tenant {tenant!r} may keep {limit} rows in {table.name}, and has {kept}"
            )


@event.listens_for(TenantSession, "after_begin")
def _tenant_for_row_level_security(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    tenant = session_tenant(session)
    if tenant is not None and connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT set_config(:setting, :tenant, true)"),
            {"setting": TENANT_SETTING, "tenant": tenant},
        )


class TenantSessions(async_sessionmaker[AsyncSession]):
    """``app.state.sessions`` with tenants: each session is bound, when created, to the
    tenant the code runs for, or to the one passed as ``tenant``."""

    # Set by the tenancy lifespan: the quotas, and what a refusal is reported to.
    row_quota: RowQuota | None = None
    row_refused: Callable[[], None] | None = None

    def __call__(self, **options: Any) -> AsyncSession:
        info = options.setdefault("info", {})
        info.setdefault(TENANT, current_tenant.get())
        info.setdefault(ROW_QUOTA, self.row_quota)
        info.setdefault(ROW_REFUSED, self.row_refused)
        return super().__call__(**options)

    def for_tenant(self, tenant: str | None) -> AsyncSession:
        """A session bound to ``tenant`` whatever the code runs for (jobs, commands)."""
        return self(info={TENANT: tenant})


def tenant_sessions(engine: AsyncEngine) -> TenantSessions:
    # As core.database.session_factory: objects stay readable after commit.
    return TenantSessions(engine, expire_on_commit=False, sync_session_class=TenantSession)


@contextmanager
def acting_for(tenant: str) -> Iterator[None]:
    """Runs the block as ``tenant``'s: the sessions it opens, its flag reads, its logs."""
    reset = current_tenant.set(tenant)
    try:
        yield
    finally:
        current_tenant.reset(reset)
