"""Tenant admin API: create, list, change, suspend, resume and delete tenants.

Every route needs the platform admin role (``APP_TENANCY__ADMIN_ROLE``); every change is
in the tenant's audit log (``GET /api/v1/tenants/{id}/changes``).
"""

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status

from ..core.errors import problem_responses
from .dependencies import PlatformAdminDep, TenantServiceDep
from .schemas import (
    Suspension,
    TenantChangeRead,
    TenantCreate,
    TenantPage,
    TenantPatch,
    TenantRead,
    TenantStatus,
)

router = APIRouter(
    prefix="/api/v1/tenants", tags=["tenants"], responses=problem_responses(401, 403, 422)
)

TenantIdPath = Annotated[
    str,
    Path(min_length=1, max_length=63, pattern=r"^[a-z0-9-]+$", description="The tenant's id"),
]
# Any text: a value that names no version is a precondition that fails (412), as for
# items.
IfMatch = Annotated[
    str | None,
    Header(description='The tenant\'s version as read, quoted ("3"); 412 if it changed since'),
]
_VERSION_TAG = re.compile(r'"([0-9]{1,18})"')


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    tag = _VERSION_TAG.fullmatch(if_match.strip())
    # -1 matches no version: the precondition fails.
    return int(tag.group(1)) if tag else -1


@router.get("")
async def list_tenants(
    _: PlatformAdminDep,
    service: TenantServiceDep,
    status_: Annotated[TenantStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> TenantPage:
    return await service.page(status=status_, limit=limit, offset=offset)


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(409))
async def create_tenant(
    principal: PlatformAdminDep,
    body: TenantCreate,
    service: TenantServiceDep,
    request: Request,
    response: Response,
) -> TenantRead:
    created = await service.create(body, actor=principal.subject)
    # A path, not a URL built from a Host header the client chose.
    response.headers["Location"] = request.url_for("get_tenant", tenant_id=created.id).path
    return created


@router.get("/{tenant_id}", responses=problem_responses(404))
async def get_tenant(
    _: PlatformAdminDep, tenant_id: TenantIdPath, service: TenantServiceDep
) -> TenantRead:
    return await service.get(tenant_id)


@router.patch("/{tenant_id}", responses=problem_responses(404, 409, 412))
async def update_tenant(
    principal: PlatformAdminDep,
    tenant_id: TenantIdPath,
    body: TenantPatch,
    service: TenantServiceDep,
    if_match: IfMatch = None,
) -> TenantRead:
    return await service.update(
        tenant_id, body, actor=principal.subject, version=_version(if_match)
    )


@router.post("/{tenant_id}/suspend", responses=problem_responses(404, 409))
async def suspend_tenant(
    principal: PlatformAdminDep,
    tenant_id: TenantIdPath,
    body: Suspension,
    service: TenantServiceDep,
) -> TenantRead:
    """Refuses the tenant's requests from now on (other processes within the directory's
    TTL); its rows are kept."""
    return await service.suspend(tenant_id, actor=principal.subject, reason=body.reason)


@router.post("/{tenant_id}/resume", responses=problem_responses(404, 409))
async def resume_tenant(
    principal: PlatformAdminDep, tenant_id: TenantIdPath, service: TenantServiceDep
) -> TenantRead:
    return await service.resume(tenant_id, actor=principal.subject)


@router.delete(
    "/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 409),
)
async def delete_tenant(
    principal: PlatformAdminDep, tenant_id: TenantIdPath, service: TenantServiceDep
) -> None:
    """Deletes a suspended tenant and every row it owns; 409 while it is active."""
    await service.delete(tenant_id, actor=principal.subject)


@router.get("/{tenant_id}/changes", responses=problem_responses(404))
async def tenant_changes(
    _: PlatformAdminDep,
    tenant_id: TenantIdPath,
    service: TenantServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TenantChangeRead]:
    return await service.changes(tenant_id, limit)
