"""Tenant admin API: create, list, change, suspend, resume and delete tenants.

Every route needs the platform admin role (``APP_AUTH__SERVICE_ADMIN_ROLE``); every change is
in the tenant's audit log (``GET /api/v1/tenants/{id}/changes``).
"""

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, status
from pydantic import BeforeValidator

from ..core.auth.dependencies import require_roles
from ..core.errors import ProblemError, problem_responses
from .dependencies import PlatformAdminDep, TenantDep, TenantServiceDep
from .resolution import TenantResolver
from .schemas import (
    Suspension,
    TenantChangeRead,
    TenantCreate,
    TenantPage,
    TenantPatch,
    TenantRead,
    TenantStatus,
    TenantUsage,
)
from .usage import MAX_PERIOD_DAYS, usage_report

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


class IfMatchError(ProblemError):
    """An If-Match that names no version of a tenant: a quoted number, or "*"."""

    status = 412


def _version(if_match: str | None) -> int | None:
    # "*": any current version (RFC 9110), as no header.
    if if_match is None or if_match.strip() == "*":
        return None
    tag = _VERSION_TAG.fullmatch(if_match.strip())
    if tag is None:
        raise IfMatchError(
            f"If-Match {if_match!r} names no version: send the ETag the tenant was read "
            'with ("3"), or "*"'
        )
    return int(tag.group(1))


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
    _: PlatformAdminDep, tenant_id: TenantIdPath, service: TenantServiceDep, response: Response
) -> TenantRead:
    tenant = await service.get(tenant_id)
    # What If-Match names to change it.
    response.headers["ETag"] = f'"{tenant.version}"'
    return tenant


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
    service: TenantServiceDep,
    body: Annotated[Suspension | None, Body()] = None,
) -> TenantRead:
    """Refuses the tenant's requests from now on (other processes within the directory's
    TTL); its rows are kept. The body, with its reason for the audit log, is optional."""
    reason = body.reason if body is not None else ""
    return await service.suspend(tenant_id, actor=principal.subject, reason=reason)


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


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value: object) -> object:
    # pydantic's date also takes a number of seconds since 1970 ("0"): not a day here.
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]
Since = Annotated[
    Day | None,
    Query(
        description=(
            "First UTC day [default: the 1st of until's month]; a period is at most "
            f"{MAX_PERIOD_DAYS} days (422 past it)"
        )
    ),
]
Until = Annotated[Day | None, Query(description="Last UTC day, included [default: today]")]


async def _report(
    request: Request, tenant_id: str, since: date | None, until: date | None
) -> TenantUsage:
    resolver: TenantResolver = request.app.state.tenant_resolver
    # Read now: the quotas are the tenant's as stored, not as this process last saw them.
    resolver.directory.forget(tenant_id)
    await resolver.directory.lookup(tenant_id)
    async with (
        request.app.state.platform_sessions() as platform,
        request.app.state.sessions.for_tenant(tenant_id) as tenants_own,
    ):
        return await usage_report(
            tenant_id,
            since,
            until,
            platform=platform,
            tenants_own=tenants_own,
            meter=request.app.state.tenant_usage,
            quotas=resolver.quotas_of(tenant_id),
        )


@router.get("/{tenant_id}/usage", responses=problem_responses(404))
async def tenant_usage(
    tenant_id: TenantIdPath,
    _: PlatformAdminDep,
    request: Request,
    since: Since = None,
    until: Until = None,
) -> TenantUsage:
    """A tenant's usage over a period, by meter and day; its rows; its quotas."""
    return await _report(request, tenant_id, since, until)


# The tenant's own view, for its admins: the request's tenant, never another.
usage_router = APIRouter(
    prefix="/api/v1/usage", tags=["tenants"], responses=problem_responses(401, 403, 422)
)


@usage_router.get("", dependencies=[Depends(require_roles("admin"))])
async def own_usage(
    tenant: TenantDep, request: Request, since: Since = None, until: Until = None
) -> TenantUsage:
    """The request's tenant's usage over a period, by meter and day; its rows; its
    quotas. For its admins (role ``admin``)."""
    return await _report(request, tenant, since, until)
