"""Row-level security for a tenant-scoped table, in a migration: PostgreSQL only.

A model that inherits ``TenantScoped`` gets its ``tenant_id`` column from the model; its
migration adds the policy that holds the line below the ORM::

    from alembic import op

    from <package>.tenancy.rls import disable_row_level_security, enable_row_level_security


    def upgrade() -> None:
        op.create_table("invoices", ...)
        enable_row_level_security(op, "invoices")


    def downgrade() -> None:
        disable_row_level_security(op, "invoices")
        op.drop_table("invoices")

Both do nothing on SQLite. ``tests/test_tenancy.py`` checks that every tenant-scoped
table has the policy.
"""

from typing import Protocol

POLICY = "tenant_isolation"


class Operations(Protocol):
    """What is used of Alembic's ``op``."""

    def get_bind(self) -> object: ...

    def execute(self, sqltext: str) -> object: ...


def _on_postgresql(op: Operations) -> bool:
    return getattr(getattr(op.get_bind(), "dialect", None), "name", None) == "postgresql"


def enable_row_level_security(op: Operations, table: str) -> None:
    """Rows of ``table`` are visible and writable only where ``tenant_id`` is the
    transaction's ``app.tenant_id``; with none set, no row is. ``FORCE`` holds the
    table's owner too (the role that migrates, often the service's own)."""
    if not _on_postgresql(op):
        return
    op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
    op.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
    # The second argument of current_setting: NULL instead of an error when unset.
    condition = "tenant_id = current_setting('app.tenant_id', true)"
    op.execute(f'CREATE POLICY {POLICY} ON "{table}" USING ({condition}) WITH CHECK ({condition})')


def disable_row_level_security(op: Operations, table: str) -> None:
    if not _on_postgresql(op):
        return
    op.execute(f'DROP POLICY IF EXISTS {POLICY} ON "{table}"')
    op.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
    op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
