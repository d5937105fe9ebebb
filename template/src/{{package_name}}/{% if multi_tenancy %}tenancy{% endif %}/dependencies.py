"""FastAPI dependencies: the request's tenant, the tenant service, the platform admin."""

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from ..core.auth.dependencies import ServiceAdminDep, bearer_token, verify_request_token
from ..core.database import SessionDep
from ..core.errors import ForbiddenError, UnauthorizedError
from ..core.tenant import current_tenant
from .directory import TenantDirectory
from .service import TenantService
from .settings import TenancySettings
from .usage import UsageMeter


def tenant_of(connection: HTTPConnection, authenticated: bool) -> str:
    """The tenant ``connection`` acts for; 401 (no caller) or 403 when it names none.

    Also the GraphQL slice's check: its operations need a tenant as the item routes do.
    """
    tenant = current_tenant.get()
    if tenant is not None:
        return tenant
    settings: TenancySettings = connection.app.state.settings.tenancy
    if "token" in settings.sources and not authenticated:
        raise UnauthorizedError("a bearer token naming a tenant is required", error=None)
    sources = ", ".join(settings.sources)
    raise ForbiddenError(f"the request names no tenant (read from: {sources})")


async def required_tenant(request: Request) -> str:
    """The tenant the request acts for; 401 or 403 when it names none. A bearer token
    that does not verify is a 401 whatever named the tenant: its holder must know to
    renew it. (Verified here, not through HTTPBearer: the routes stay open to anonymous
    callers of a tenant named otherwise, and the OpenAPI document says so.)"""
    token = bearer_token(request)
    if token is not None:
        await verify_request_token(request, token)
    return tenant_of(request, authenticated=token is not None)


TenantDep = Annotated[str, Depends(required_tenant)]


# Platform admins run the service and its tenants (APP_AUTH__SERVICE_ADMIN_ROLE).
PlatformAdminDep = ServiceAdminDep


async def tenant_service(request: Request, session: SessionDep) -> TenantService:
    directory: TenantDirectory = request.app.state.tenant_directory
    return TenantService(
        session,
        request.app.state.settings.tenancy.plans,
        directory.forget,
        request.app.state.tenant_places,
    )


TenantServiceDep = Annotated[TenantService, Depends(tenant_service)]


class TenantUsageRecorder:
    """Counts the request's tenant's use of meters of the service's own ("exports",
    "api.calls"), beside the requests counted for every tenant; stored in batches."""

    def __init__(self, meter: UsageMeter, tenant: str) -> None:
        self._meter = meter
        self.tenant = tenant

    def record(self, meter: str, amount: int = 1) -> None:
        """Raises ValueError for a meter name that is not one, or a negative amount."""
        self._meter.record(self.tenant, meter, amount)


async def tenant_usage(request: Request, tenant: TenantDep) -> TenantUsageRecorder:
    return TenantUsageRecorder(request.app.state.tenant_usage, tenant)


# In a handler: ``usage: UsageDep`` then ``usage.record("exports")``.
UsageDep = Annotated[TenantUsageRecorder, Depends(tenant_usage)]
