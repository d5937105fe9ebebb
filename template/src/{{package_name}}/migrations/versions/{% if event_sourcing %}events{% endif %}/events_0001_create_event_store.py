"""Create the event store, its outbox and inbox, and the wallets' read model: the root of
the ``events`` branch.

Revision ID: events_0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "events_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("events",)
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The outbox's lanes (events/models.py OUTBOX_LANES): fixed here, by their rows.
OUTBOX_LANES = 16


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("aggregate_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("trace_parent", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_events")),
        sa.UniqueConstraint("aggregate_id", "version", name=op.f("uq_events_aggregate_id")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
    )
    op.create_index(op.f("ix_events_recorded_at"), "events", ["recorded_at"])
    sequence = op.create_table(
        "event_sequence",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last", BIG_ID, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_event_sequence")),
    )
    op.bulk_insert(sequence, [{"name": "events", "last": 0}])
    op.create_table(
        "event_snapshots",
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("aggregate_type", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("aggregate_id", name=op.f("pk_event_snapshots")),
    )
    op.create_table(
        "event_projections",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", BIG_ID, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_event_projections")),
    )
    op.create_table(
        "event_outbox",
        sa.Column("position", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("lane", sa.Integer(), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_event_outbox")),
    )
    op.create_index("ix_event_outbox_lane_position", "event_outbox", ["lane", "position"])
    lanes = op.create_table(
        "event_outbox_lanes",
        sa.Column("lane", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("lane", name=op.f("pk_event_outbox_lanes")),
    )
    op.bulk_insert(lanes, [{"lane": lane} for lane in range(OUTBOX_LANES)])
    op.create_table(
        "event_inbox",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=op.f("pk_event_inbox")),
    )
    op.create_index(op.f("ix_event_inbox_received_at"), "event_inbox", ["received_at"])
    op.create_table(
        "event_dead_letters",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("position", BIG_ID, nullable=True),
        sa.Column("aggregate_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_dead_letters")),
    )
    op.create_table(
        "wallet_summaries",
        sa.Column("wallet_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", BIG_ID, nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("wallet_id", name=op.f("pk_wallet_summaries")),
    )
    op.create_index(
        "ix_wallet_summaries_owner", "wallet_summaries", ["tenant", "owner", "wallet_id"]
    )
    op.create_table(
        "wallet_activity",
        sa.Column("wallet_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("deposits", sa.Integer(), nullable=False),
        sa.Column("withdrawals", sa.Integer(), nullable=False),
        sa.Column("deposited", BIG_ID, nullable=False),
        sa.Column("withdrawn", BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("wallet_id", name=op.f("pk_wallet_activity")),
    )


def downgrade() -> None:
    for table in (
        "wallet_activity",
        "wallet_summaries",
        "event_dead_letters",
        "event_inbox",
        "event_outbox_lanes",
        "event_outbox",
        "event_projections",
        "event_snapshots",
        "event_sequence",
        "events",
    ):
        op.drop_table(table)
