"""Create the model registry: the root of the ``ml`` branch.

The model serving slice's tables have a branch of their own, so switching the slice on or
off with ``copier update`` never reorders the service's own revisions.

Revision ID: ml_0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ml_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("ml",)
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ml_models",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("challenger_percent", sa.Double(), nullable=False),
        sa.Column("experiment", sa.String(length=100), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ml_models")),
    )
    op.create_table(
        "ml_model_versions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("framework", sa.String(length=16), nullable=False),
        sa.Column("artifact_key", sa.String(length=500), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_bytes", sa.Integer(), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("training_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("training_profile", sa.JSON(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["ml_models.name"],
            name=op.f("fk_ml_model_versions_model_name_ml_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_model_versions")),
        sa.UniqueConstraint("model_name", "version", name=op.f("uq_ml_model_versions_model_name")),
    )
    op.create_table(
        "ml_model_aliases",
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("alias", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["ml_models.name"],
            name=op.f("fk_ml_model_aliases_model_name_ml_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_name", "alias", name=op.f("pk_ml_model_aliases")),
    )
    op.create_table(
        "ml_model_changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("alias", sa.String(length=16), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_model_changes")),
    )
    op.create_index("ix_ml_model_changes_model", "ml_model_changes", ["model_name", "id"])
    op.create_table(
        "ml_prediction_log",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("prediction_id", sa.String(length=36), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ml_prediction_log")),
    )
    op.create_index(
        "ix_ml_prediction_log_model", "ml_prediction_log", ["model_name", "predicted_at"]
    )
    op.create_index(
        op.f("ix_ml_prediction_log_prediction_id"), "ml_prediction_log", ["prediction_id"]
    )


def downgrade() -> None:
    op.drop_table("ml_prediction_log")
    op.drop_table("ml_model_changes")
    op.drop_table("ml_model_aliases")
    op.drop_table("ml_model_versions")
    op.drop_table("ml_models")
