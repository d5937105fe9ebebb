"""The caching slice's part in the application (see core/slices.py)."""

from starlette.middleware import Middleware

from ..core.slices import Slice
from .http import CacheHeadersMiddleware
from .lifespan import caching_lifespan

# After Redis when the service has it. Its middleware marks answers to authenticated
# requests private on every route; slices add their routes' policies with their own.
caching_slice = Slice(
    name="caching",
    after=("redis",),
    lifespan=caching_lifespan,
    middleware=(Middleware(CacheHeadersMiddleware, policies={}),),
)
