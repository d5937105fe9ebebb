"""The model serving slice's part in the application (see core/slices.py)."""

from ..core.slices import Slice
from .lifespan import ml_lifespan
from .router import router

ml_slice = Slice(
    name="ml",
    # The registry and the prediction log live in the database.
    requires=("database",),
    # With tenants, the tenancy slice opens the platform's sessions the registry uses.
    after=("tenancy",),
    lifespan=ml_lifespan,
    routers=(router,),
)
