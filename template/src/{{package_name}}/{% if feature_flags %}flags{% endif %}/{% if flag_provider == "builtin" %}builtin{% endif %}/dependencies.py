"""``FlagServiceDep`` for the admin API."""

from typing import Annotated

from fastapi import Depends, Request

from ...core.database import SessionDep
from .service import FlagService


async def flag_service(session: SessionDep, request: Request) -> FlagService:
    return FlagService(session, request.app.state.flag_sync.changed)


FlagServiceDep = Annotated[FlagService, Depends(flag_service)]
