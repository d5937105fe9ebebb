"""FastAPI dependencies: the request's tenant, the tenant service, the platform admin."""

from typing import Annotated

from fastapi import Depends, Request

from ..core.auth.dependencies import PrincipalDep
from ..core.auth.principal import Principal
from ..core.database import SessionDep
from ..core.errors import ForbiddenError, UnauthorizedError
from ..core.tenant import current_tenant
from .directory import TenantDirectory
from .service import TenantService
from .settings import TenancySettings


async def required_tenant(request: Request) -> str:
    """The tenant the request acts for; 401 or 403 when it names none."""
    tenant = current_tenant.get()
    if tenant is not None:
        return tenant
    settings: TenancySettings = request.app.state.settings.tenancy
    if "token" in settings.sources and "authorization" not in request.headers:
        raise UnauthorizedError("a bearer token naming a tenant is required", error=None)
    sources = ", ".join(settings.sources)
    raise ForbiddenError(f"the request names no tenant (read from: {sources})")


TenantDep = Annotated[str, Depends(required_tenant)]


async def platform_admin(request: Request, principal: PrincipalDep) -> Principal:
    role = request.app.state.settings.tenancy.admin_role
    if not principal.has_roles(role):
        raise ForbiddenError(f"missing role: {role}")
    return principal


PlatformAdminDep = Annotated[Principal, Depends(platform_admin)]


async def tenant_service(request: Request, session: SessionDep) -> TenantService:
    directory: TenantDirectory = request.app.state.tenant_directory
    return TenantService(session, request.app.state.settings.tenancy.plans, directory.forget)


TenantServiceDep = Annotated[TenantService, Depends(tenant_service)]
