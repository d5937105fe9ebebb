"""Create the experiment tables: the root of the ``experiments`` branch.

The experiments slice's tables have a branch of their own, so switching the slice on or
off with ``copier update`` never reorders the service's own revisions.

Revision ID: experiments_0001
Revises:
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "experiments_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("experiments",)
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipped_arm", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_experiments")),
    )
    op.create_table(
        "experiment_cohorts",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_experiment_cohorts")),
    )
    op.create_table(
        "experiment_exposures",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("experiment_key", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("exposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_exposures")),
        sa.UniqueConstraint(
            "experiment_key", "subject", name=op.f("uq_experiment_exposures_experiment_key")
        ),
    )
    op.create_table(
        "experiment_metric_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_metric_events")),
    )
    op.create_index(
        "ix_experiment_metric_events_metric_subject",
        "experiment_metric_events",
        ["metric", "subject", "occurred_at", "value"],
    )
    op.create_table(
        "experiment_changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_key", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_changes")),
    )
    op.create_index(
        "ix_experiment_changes_subject",
        "experiment_changes",
        ["subject_kind", "subject_key", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_experiment_changes_subject", table_name="experiment_changes")
    op.drop_table("experiment_changes")
    op.drop_index(
        "ix_experiment_metric_events_metric_subject", table_name="experiment_metric_events"
    )
    op.drop_table("experiment_metric_events")
    op.drop_table("experiment_exposures")
    op.drop_table("experiment_cohorts")
    op.drop_table("experiments")
