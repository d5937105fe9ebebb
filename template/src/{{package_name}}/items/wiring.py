"""The items slice's part in the application (see core/slices.py)."""

from ..core.slices import Slice
from .router import router

items_slice = Slice(name="items", requires=("database",), routers=(router,))
