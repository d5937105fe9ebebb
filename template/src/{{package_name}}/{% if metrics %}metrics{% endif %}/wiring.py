"""The metrics slice's part in the application (see core/slices.py)."""

from ..core.slices import Slice
from .router import router
from .runtime import runtime_metrics_lifespan
from .setup import instrument_metrics

metrics_slice = Slice(
    name="metrics",
    # The runtime sampler reads the database's connection pool.
    after=("database",),
    lifespan=runtime_metrics_lifespan,
    routers=(router,),
    instrument=instrument_metrics,
)
