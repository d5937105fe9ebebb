"""The caching slice's part in the application (see core/slices.py)."""

from starlette.middleware import Middleware

from ..core.slices import Slice
from .http import CacheHeadersMiddleware
from .lifespan import caching_lifespan

# After Redis when the service has it. Its middleware marks answers to authenticated
# requests private on every route, and adds the headers of the policies other slices give
# their routes (http.apply_policies, from their instrument hooks).
caching_slice = Slice(
    name="caching",
    after=("redis",),
    lifespan=caching_lifespan,
    middleware=(Middleware(CacheHeadersMiddleware),),
)
