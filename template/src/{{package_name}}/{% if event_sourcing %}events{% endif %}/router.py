"""The event store's own API, for the service's admins (``APP_AUTH__SERVICE_ADMIN_ROLE``):
the audit log of every aggregate of every tenant, and how far each projection has come."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from ..core.auth.dependencies import service_admin
from ..core.database import SessionDep
from ..core.errors import problem_responses
from .models import StoredEvent
from .projections import ProjectionRunner

router = APIRouter(prefix="/api/v1/events", tags=["events"], dependencies=[Depends(service_admin)])


class AuditEntry(BaseModel):
    position: int
    id: str
    aggregate_type: str
    aggregate_id: str
    version: int
    type: str
    # As stored, in its stored schema version.
    schema_version: int
    data: dict[str, Any]
    actor: str | None
    tenant: str | None
    recorded_at: datetime


class ProjectionStatus(BaseModel):
    name: str
    position: int
    # Events appended that the projection has not applied yet.
    lag: int


class ProjectionsStatus(BaseModel):
    head: int
    projections: list[ProjectionStatus]


@router.get("", responses=problem_responses(401, 403, 422))
async def audit_log(
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Position to read after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    aggregate_id: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
) -> list[AuditEntry]:
    """Who did what when: the events in global order, of every aggregate and tenant."""
    query = (
        select(StoredEvent)
        .where(StoredEvent.position > after)
        .order_by(StoredEvent.position)
        .limit(limit)
    )
    if aggregate_id is not None:
        query = query.where(StoredEvent.aggregate_id == aggregate_id)
    if actor is not None:
        query = query.where(StoredEvent.actor == actor)
    return [
        AuditEntry(
            position=row.position,
            id=row.event_id,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            version=row.version,
            type=row.event_type,
            schema_version=row.schema_version,
            data=row.data,
            actor=row.actor,
            tenant=row.tenant,
            recorded_at=row.recorded_at,
        )
        for row in await session.scalars(query)
    ]


@router.get("/projections", responses=problem_responses(401, 403))
async def projections_status(request: Request) -> ProjectionsStatus:
    runner: ProjectionRunner = request.app.state.projection_runner
    head, positions = await runner.positions()
    return ProjectionsStatus(
        head=head,
        projections=[
            ProjectionStatus(name=name, position=position, lag=max(0, head - position))
            for name, position in sorted(positions.items())
        ],
    )
