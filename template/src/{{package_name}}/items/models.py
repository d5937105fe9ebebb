from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from ..core.database import Base, BigId, TimestampMixin


class Item(TimestampMixin, Base):
    __tablename__ = "items"
    __table_args__ = (
        CheckConstraint("price_cents >= 0", name="price_cents_not_negative"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(String(1000))
    # Money as integer minor units: exact, and the same on SQLite and PostgreSQL.
    price_cents: Mapped[int]
    quantity: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(255))
    # Optimistic locking: SQLAlchemy adds "AND version = :old" to every UPDATE and raises
    # StaleDataError when a concurrent writer got there first.
    version: Mapped[int] = mapped_column()

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declarative API
