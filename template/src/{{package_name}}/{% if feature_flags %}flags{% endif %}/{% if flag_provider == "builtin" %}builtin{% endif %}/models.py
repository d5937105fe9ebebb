"""Flag definitions and their audit log, in the service's own database."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ...core.database import Base, BigId, utcnow


class Flag(Base):
    __tablename__ = "feature_flags"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    # The validated FlagBody as JSON: read back through the same schema.
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Optimistic concurrency (SQLAlchemy's version counter): a write applies only to the
    # version it read, so two admins changing one flag at once cannot silently undo each
    # other, and each audit entry's "before" is what the change really replaced.
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # Read by SQLAlchemy's declarative mapping from the class, never mutated.
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class FlagChange(Base):
    """Who changed which flag when, and from what to what. Never updated or deleted."""

    __tablename__ = "feature_flag_changes"
    __table_args__ = (Index("ix_feature_flag_changes_flag_key_id", "flag_key", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    flag_key: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
