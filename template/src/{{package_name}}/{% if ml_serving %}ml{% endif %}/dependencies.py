"""``ModelRegistryDep`` for the registry API, ``ModelServerDep`` for what this process
serves."""

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .registry import ModelRegistry
from .schemas import MAX_VERSION, MODEL_NAME
from .server import ModelServer

ModelNamePath = Annotated[str, Path(pattern=MODEL_NAME, description="The model's name")]
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION, description="The version's number")]


async def model_registry(request: Request) -> AsyncIterator[ModelRegistry]:
    server: ModelServer = request.app.state.model_server
    # The registry's sessions (with tenants, bound to none: the registry is the platform's).
    sessions: async_sessionmaker[AsyncSession] = request.app.state.model_sessions
    session = sessions()
    try:
        yield ModelRegistry(
            session,
            request.app.state.model_store,
            request.app.state.settings.ml.trusted_types,
            # A change made here is served by this process at once; the others poll.
            changed=server.refresh,
        )
    finally:
        # Shielded: a request cut by its deadline still gives its connection back.
        await asyncio.shield(session.close())


async def model_server(request: Request) -> ModelServer:
    server: ModelServer = request.app.state.model_server
    return server


ModelRegistryDep = Annotated[ModelRegistry, Depends(model_registry)]
ModelServerDep = Annotated[ModelServer, Depends(model_server)]
