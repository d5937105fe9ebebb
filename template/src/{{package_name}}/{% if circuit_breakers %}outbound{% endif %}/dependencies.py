from collections.abc import Callable

from fastapi import Request

from .client import DependencyUnavailableError, OutboundClient


def outbound_client(dependency: str) -> Callable[[Request], OutboundClient]:
    """A FastAPI dependency giving the client of ``dependency`` (its settings' name).

    Use it in an ``Annotated`` alias next to the code that calls the dependency:
    ``Enrichment = Annotated[OutboundClient, Depends(outbound_client("enrichment"))]``.
    """

    def client(request: Request) -> OutboundClient:
        clients: dict[str, OutboundClient] = request.app.state.outbound
        found = clients.get(dependency)
        if found is None:
            # The code names a dependency the settings have no section for.
            raise DependencyUnavailableError(dependency, "it is not configured", None)
        return found

    return client
