"""Every slice's ORM models, imported in one place so ``Base.metadata`` knows all tables.

Alembic's autogenerate compares the database against this metadata; a model missing here
would be reported as a table to drop.
"""

from .core.database import Base
from .items.models import Item

__all__ = ["Base", "Item"]
