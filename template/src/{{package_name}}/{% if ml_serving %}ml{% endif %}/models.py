"""The model registry's tables: models, their versions and aliases, the audit log and the
prediction log."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..core.database import Base, BigId, utcnow


class ModelRow(Base):
    """A named model; what it serves is in its aliases, how traffic splits here."""

    __tablename__ = "ml_models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    # Share of callers (0 to 100) the challenger answers; sticky per routing key.
    challenger_percent: Mapped[float] = mapped_column(default=0.0)
    # Or the experiment (of the experiments slice) whose arms decide, when one is set.
    experiment: Mapped[str | None] = mapped_column(String(100))
    # Grows with every change to the aliases or the split: what each process polls.
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelVersionRow(Base):
    """One registered version: immutable once written (nothing updates these rows)."""

    __tablename__ = "ml_model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_name: Mapped[str] = mapped_column(ForeignKey("ml_models.name", ondelete="CASCADE"))
    version: Mapped[int]
    # sklearn (a skops file) or onnx.
    framework: Mapped[str] = mapped_column(String(16))
    # The artifact's key in the configured store, its SHA-256 and size: a load checks them.
    artifact_key: Mapped[str] = mapped_column(String(500))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_bytes: Mapped[int]
    # The input features and the output (schemas.Signature as JSON).
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Whatever the trainer measured (accuracy, AUC...), as given.
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # SHA-256 of the training data, and the per-feature bins drift is measured against.
    training_fingerprint: Mapped[str | None] = mapped_column(String(64))
    training_profile: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAliasRow(Base):
    """``champion``, ``challenger`` or ``shadow`` of a model, pointing at one version."""

    __tablename__ = "ml_model_aliases"

    model_name: Mapped[str] = mapped_column(
        ForeignKey("ml_models.name", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int]
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModelChange(Base):
    """Who registered, promoted, rolled back or split what, when. Never updated."""

    __tablename__ = "ml_model_changes"
    __table_args__ = (Index("ix_ml_model_changes_model", "model_name", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(64))
    # register, promote, rollback, retire (an alias removed) or split.
    action: Mapped[str] = mapped_column(String(16))
    alias: Mapped[str | None] = mapped_column(String(16))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(255))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PredictionLogRow(Base):
    """A sampled prediction, kept for labelling and offline evaluation."""

    __tablename__ = "ml_prediction_log"
    __table_args__ = (Index("ix_ml_prediction_log_model", "model_name", "predicted_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The id the response carried: a later label finds its prediction by it.
    prediction_id: Mapped[str] = mapped_column(String(36), index=True)
    # The row's place in its request's ``inputs`` (0 for a single ``input``).
    row: Mapped[int] = mapped_column(default=0)
    model_name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    # The alias that answered (champion, challenger) or compared (shadow).
    role: Mapped[str] = mapped_column(String(16))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[dict[str, Any]] = mapped_column(JSON)
    predicted_at: Mapped[datetime]
