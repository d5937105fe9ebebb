"""The experiments slice's part in the application (see core/slices.py)."""

from ..core.slices import Slice
from .lifespan import experiments_lifespan
from .router import cohorts_router, router

experiments_slice = Slice(
    name="experiments",
    # Definitions, exposures and events live in the database. The flags slice starts
    # after this one (it names it in its ``after``) to wrap its provider in this layer.
    requires=("database",),
    lifespan=experiments_lifespan,
    routers=(router, cohorts_router),
)
