"""The outbound slice's part in the application (see core/slices.py)."""

from ..core.slices import Slice
from .lifespan import outbound_lifespan

# After Redis when the service has it: breaker state is shared through it.
outbound_slice = Slice(name="outbound", after=("redis",), lifespan=outbound_lifespan)
