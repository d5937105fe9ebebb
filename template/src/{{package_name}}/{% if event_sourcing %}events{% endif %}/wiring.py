"""The event sourcing slice's part in the application (see core/slices.py)."""

from ..core.slices import Slice
from ..wallets.router import router as wallets_router
from .lifespan import events_lifespan
from .router import router

events_slice = Slice(
    name="events",
    # The events, projections and outbox live in the service's database.
    requires=("database",),
    lifespan=events_lifespan,
    routers=(wallets_router, router),
)
