"""Creating, changing, suspending and deleting tenants, each change in the audit log.

A change commits the tenant's new state and its audit entry together, then tells this
process's directory, so its requests see the change at once (other processes within
``APP_TENANCY__DIRECTORY_TTL_SECONDS``). A change is written only if nobody changed the
tenant since it was read (the row's version): a lost race answers 409, never a silent
overwrite.
"""

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ..core.errors import ConflictError, NotFoundError, PreconditionFailedError, ProblemError
from .models import Tenant, TenantChange, tenant_scoped_tables
from .schemas import (
    TenantChangeRead,
    TenantConfiguration,
    TenantCreate,
    TenantPage,
    TenantPatch,
    TenantRead,
    TenantStatus,
)
from .settings import Quotas

Forget = Callable[[str], None]


class Places(Protocol):
    """Where tenants' tables are kept apart, when each tenant has a place of its own (a
    schema or a database: ``provisioning.TenantPlaces``)."""

    async def provision(self, tenant: str) -> None: ...

    async def deprovision(self, tenant: str) -> None: ...


def _forget_nothing(tenant_id: str) -> None:
    """For callers without a directory to keep current (the CLI)."""


class UnknownPlanError(ProblemError):
    status = 422


class PlaceUnavailableError(ProblemError):
    """A tenant's place (schema, database) could not be prepared or dropped; nothing was
    registered or deleted, and the same request can be retried."""

    status = 503


class UnknownTableError(ProblemError):
    """A row quota naming a table that holds no tenant's rows."""

    status = 422


def tenant_read(tenant: Tenant) -> TenantRead:
    configuration = TenantConfiguration.model_validate(tenant.configuration)
    return TenantRead(
        id=tenant.id,
        name=tenant.name,
        status="active" if tenant.status == "active" else "suspended",
        plan=configuration.plan,
        features=configuration.features,
        limits=configuration.limits,
        version=tenant.version,
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
    )


def _state(tenant: Tenant) -> dict[str, Any]:
    """What the audit log records of a tenant."""
    return {"name": tenant.name, "status": tenant.status, "configuration": tenant.configuration}


class TenantService:
    def __init__(
        self,
        session: AsyncSession,
        plans: Sequence[str],
        forget: Forget = _forget_nothing,
        places: Places | None = None,
    ) -> None:
        self.session = session
        self.plans = tuple(plans)
        self.forget = forget
        # None: tenants share the tables (row isolation), a new tenant needs no place.
        self.places = places

    @staticmethod
    def _limits(limits: Quotas) -> Quotas:
        unknown = sorted(set(limits.rows) - set(tenant_scoped_tables()))
        if unknown:
            known = ", ".join(tenant_scoped_tables())
            raise UnknownTableError(
                f"no tenant-scoped table {', '.join(unknown)}; they are: {known}",
                field="limits.rows",
            )
        return limits

    def _plan(self, plan: str | None) -> str:
        if plan is None:
            return self.plans[0]
        if plan not in self.plans:
            known = ", ".join(self.plans)
            raise UnknownPlanError(f"no plan {plan!r}; the plans are: {known}", field="plan")
        return plan

    async def _tenant(self, tenant_id: str) -> Tenant:
        # populate_existing: read the row as it is now, not as this session last saw it.
        tenant = await self.session.get(Tenant, tenant_id, populate_existing=True)
        if tenant is None:
            raise NotFoundError(f"no tenant {tenant_id!r}")
        return tenant

    async def get(self, tenant_id: str) -> TenantRead:
        return tenant_read(await self._tenant(tenant_id))

    async def page(
        self, *, status: TenantStatus | None = None, limit: int = 50, offset: int = 0
    ) -> TenantPage:
        conditions = [] if status is None else [Tenant.status == status]
        total = await self.session.scalar(
            select(func.count()).select_from(Tenant).where(*conditions)
        )
        rows = await self.session.scalars(
            select(Tenant).where(*conditions).order_by(Tenant.id).limit(limit).offset(offset)
        )
        return TenantPage(
            items=[tenant_read(row) for row in rows], total=total or 0, limit=limit, offset=offset
        )

    async def active_ids(self) -> list[str]:
        """The ids of the tenants whose requests are served, in order."""
        rows = await self.session.scalars(
            select(Tenant.id).where(Tenant.status == "active").order_by(Tenant.id)
        )
        return list(rows)

    async def create(self, data: TenantCreate, actor: str) -> TenantRead:
        # Ids are never reused: a deleted tenant's tokens, cached entries and audit log
        # must not become another tenant's.
        used = await self.session.scalar(
            select(TenantChange.id).where(TenantChange.tenant_id == data.id).limit(1)
        )
        if used is not None and await self.session.get(Tenant, data.id) is None:
            raise ConflictError(
                f"tenant id {data.id!r} belonged to a deleted tenant; ids are never reused",
                field="id",
            )
        configuration = TenantConfiguration(
            plan=self._plan(data.plan), features=data.features, limits=self._limits(data.limits)
        ).model_dump(mode="json", exclude_defaults=True)
        if self.places is not None:
            if await self.session.get(Tenant, data.id) is not None:
                raise ConflictError(f"tenant {data.id!r} exists", field="id")
            # Its place first: a tenant is registered only once its tables are there.
            # A failure registers nothing, and a retry finishes the place.
            try:
                await self.places.provision(data.id)
            except Exception as exc:
                raise PlaceUnavailableError(
                    f"the place of tenant {data.id!r} could not be prepared, so it was not "
                    f"created: {type(exc).__name__}; try again, or see the service's log"
                ) from exc
        tenant = Tenant(id=data.id, name=data.name, status="active", configuration=configuration)
        self.session.add(tenant)
        try:
            await self._commit(tenant, actor, "create", None)
        except IntegrityError as exc:
            await self.session.rollback()
            raise ConflictError(f"tenant {data.id!r} exists", field="id") from exc
        return tenant_read(tenant)

    async def update(
        self, tenant_id: str, patch: TenantPatch, actor: str, *, version: int | None = None
    ) -> TenantRead:
        tenant = await self._tenant(tenant_id)
        self._check_version(tenant, version)
        before = _state(tenant)
        if patch.name is not None:
            tenant.name = patch.name
        if patch.plan is not None:
            tenant.configuration = {**tenant.configuration, "plan": self._plan(patch.plan)}
        if patch.features is not None:
            tenant.configuration = {**tenant.configuration, "features": patch.features}
        if patch.limits is not None:
            limits = self._limits(patch.limits).model_dump(mode="json", exclude_defaults=True)
            tenant.configuration = {**tenant.configuration, "limits": limits}
        if _state(tenant) == before:
            return tenant_read(tenant)
        await self._commit(tenant, actor, "update", before)
        return tenant_read(tenant)

    async def suspend(self, tenant_id: str, actor: str, reason: str = "") -> TenantRead:
        return await self._set_status(tenant_id, "suspended", actor, reason)

    async def resume(self, tenant_id: str, actor: str) -> TenantRead:
        return await self._set_status(tenant_id, "active", actor, "")

    async def _set_status(
        self, tenant_id: str, status: TenantStatus, actor: str, reason: str
    ) -> TenantRead:
        tenant = await self._tenant(tenant_id)
        if tenant.status == status:
            return tenant_read(tenant)
        before = _state(tenant)
        tenant.status = status
        action = "suspend" if status == "suspended" else "resume"
        await self._commit(tenant, actor, action, before, reason=reason)
        return tenant_read(tenant)

    async def delete(self, tenant_id: str, actor: str) -> None:
        """Deletes a suspended tenant and every row it owns (through the foreign keys, or
        with the schema or database that is its place).
        An active tenant is refused: suspending first is the step that gives its users
        and the retention policy their time (docs/tenancy.md)."""
        tenant = await self._tenant(tenant_id)
        if tenant.status != "suspended":
            raise ConflictError(
                f"tenant {tenant_id!r} is active; suspend it first (its data is deleted with it)"
            )
        before = _state(tenant)
        if self.places is not None:
            # Its place first: a failure deletes nothing, and a retry finishes the drop.
            try:
                await self.places.deprovision(tenant_id)
            except Exception as exc:
                raise PlaceUnavailableError(
                    f"the place of tenant {tenant_id!r} could not be dropped, so it was not "
                    f"deleted: {type(exc).__name__}; try again, or see the service's log"
                ) from exc
        await self.session.delete(tenant)
        await self._commit(tenant, actor, "delete", before, deleted=True)

    async def changes(self, tenant_id: str, limit: int = 100) -> list[TenantChangeRead]:
        rows = await self.session.scalars(
            select(TenantChange)
            .where(TenantChange.tenant_id == tenant_id)
            .order_by(TenantChange.id.desc())
            .limit(limit)
        )
        changes = [TenantChangeRead.model_validate(row, from_attributes=True) for row in rows]
        # Every tenant's history starts with its creation and outlives its deletion.
        if not changes:
            raise NotFoundError(f"no tenant {tenant_id!r}")
        return changes

    @staticmethod
    def _check_version(tenant: Tenant, version: int | None) -> None:
        if version is not None and version != tenant.version:
            raise PreconditionFailedError(
                f"tenant {tenant.id!r} is at version {tenant.version}, which If-Match does "
                f'not name ("{tenant.version}"); read it again and retry'
            )

    async def _commit(
        self,
        tenant: Tenant,
        actor: str,
        action: str,
        before: dict[str, Any] | None,
        *,
        reason: str = "",
        deleted: bool = False,
    ) -> None:
        after = None if deleted else _state(tenant)
        if after is not None and reason:
            after = {**after, "reason": reason}
        self.session.add(
            TenantChange(
                tenant_id=tenant.id, actor=actor, action=action, before=before, after=after
            )
        )
        try:
            await self.session.commit()
        except StaleDataError as exc:
            await self.session.rollback()
            raise ConflictError(
                f"tenant {tenant.id!r} changed while this change was made; read it and retry"
            ) from exc
        self.forget(tenant.id)
