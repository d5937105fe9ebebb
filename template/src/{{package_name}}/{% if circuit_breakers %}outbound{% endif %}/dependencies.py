from collections.abc import Callable

from fastapi import Request

from .client import OutboundClient
from .settings import DependencySettings


def outbound_client(dependency: str) -> Callable[[Request], OutboundClient]:
    """A FastAPI dependency giving the client of ``dependency`` (its settings' name).

    Use it in an ``Annotated`` alias next to the code that calls the dependency:
    ``Enrichment = Annotated[OutboundClient, Depends(outbound_client("enrichment"))]``.
    A dependency the settings do not name gets a client without a ``base_url``, whose
    calls raise DependencyUnavailableError ("not configured", 503) without going out;
    the route still validates its request first, and may check
    ``client.settings.base_url`` to answer otherwise.
    """

    def client(request: Request) -> OutboundClient:
        clients: dict[str, OutboundClient] = request.app.state.outbound
        found = clients.get(dependency)
        if found is None:
            # Made once; it never opens a connection, and the lifespan closes it.
            found = clients[dependency] = OutboundClient(dependency, DependencySettings())
        return found

    return client
