"""Create the feature flag tables: the root of the ``flags`` branch.

The built-in flag provider's tables have a branch of their own, so switching the provider
on or off with ``copier update`` never reorders the service's own revisions.

Revision ID: flags_0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "flags_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("flags",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feature_flags",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_feature_flags")),
    )
    op.create_table(
        "feature_flag_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("flag_key", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_flag_changes")),
    )
    op.create_index(
        "ix_feature_flag_changes_flag_key_id", "feature_flag_changes", ["flag_key", "id"]
    )
    op.create_index(
        op.f("ix_feature_flag_changes_changed_at"), "feature_flag_changes", ["changed_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_feature_flag_changes_changed_at"), table_name="feature_flag_changes")
    op.drop_index("ix_feature_flag_changes_flag_key_id", table_name="feature_flag_changes")
    op.drop_table("feature_flag_changes")
    op.drop_table("feature_flags")
