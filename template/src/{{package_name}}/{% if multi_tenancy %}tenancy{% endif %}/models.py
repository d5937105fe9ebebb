"""The tenant registry, its audit log, and the mixin that makes a model tenant-scoped."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..core.database import Base, BigId, TimestampMixin, utcnow

# A DNS label, so that an id can name a subdomain; lowercase, so that ids compare as
# people read them.
TENANT_ID_PATTERN = r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$"
TENANT_ID_LENGTH = 63
METER_LENGTH = 64


class Tenant(TimestampMixin, Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(TENANT_ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # "active" or "suspended": a suspended tenant's requests are refused, its rows kept.
    status: Mapped[str] = mapped_column(String(16), default="active")
    # The validated TenantConfiguration as JSON: read back through the same schema.
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Optimistic concurrency: two admins changing one tenant at once cannot silently
    # undo each other, and each audit entry's "before" is what the change replaced.
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declarative API


class TenantChange(Base):
    """Who changed which tenant when, from what to what. Never updated or deleted; kept
    after the tenant is deleted, which is why ``tenant_id`` references nothing."""

    __tablename__ = "tenant_changes"
    __table_args__ = (Index("ix_tenant_changes_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(TENANT_ID_LENGTH))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class UsageCount(Base):
    """Usage counted for one tenant on one UTC day by one meter ("requests", or a meter
    of the service's own). Processes add to it in batches (usage.py)."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[str] = mapped_column(
        String(TENANT_ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    meter: Mapped[str] = mapped_column(String(METER_LENGTH), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class TenantScoped:
    """Rows that belong to one tenant. A session reads and writes only its tenant's
    (``tenancy/isolation.py``); on PostgreSQL row-level security holds the same line for
    any SQL, raw queries included, once the table's migration enables it
    (``tenancy.rls.enable_row_level_security``). A new row gets the session's tenant.

    Deleting a tenant deletes its rows (the foreign key cascades).
    """

    tenant_id: Mapped[str] = mapped_column(
        String(TENANT_ID_LENGTH), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
