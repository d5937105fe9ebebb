"""``ModelRegistryDep`` for the registry API, ``ModelServerDep`` for what this process
serves."""

from typing import Annotated

from fastapi import Depends, Path, Request

from ..core.database import SessionDep
from .registry import ModelRegistry
from .server import ModelServer

ModelNamePath = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="The model's name")
]


async def model_registry(session: SessionDep, request: Request) -> ModelRegistry:
    server: ModelServer = request.app.state.model_server
    return ModelRegistry(
        session,
        request.app.state.model_store,
        request.app.state.settings.ml.trusted_types,
        # A change made here is served by this process at once; the others poll.
        changed=server.refresh,
    )


def model_server(request: Request) -> ModelServer:
    server: ModelServer = request.app.state.model_server
    return server


ModelRegistryDep = Annotated[ModelRegistry, Depends(model_registry)]
ModelServerDep = Annotated[ModelServer, Depends(model_server)]
