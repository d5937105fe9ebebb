"""Experiments, cohorts, exposures, metric events and the audit log."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..core.database import Base, BigId, utcnow


class ExperimentRow(Base):
    __tablename__ = "experiments"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    # The validated ExperimentBody as JSON: read back through the same schema.
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    shipped_arm: Mapped[str | None] = mapped_column(String(64))
    # Optimistic concurrency, as for flags: a change applies to the version it read.
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class CohortRow(Base):
    __tablename__ = "experiment_cohorts"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class Exposure(Base):
    """A subject's first exposure to an experiment: one row per experiment and subject,
    which the unique constraint keeps so even when processes race to write it."""

    __tablename__ = "experiment_exposures"
    __table_args__ = (UniqueConstraint("experiment_key", "subject"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_key: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(256))
    arm: Mapped[str] = mapped_column(String(64))
    exposed_at: Mapped[datetime]


class MetricEventRow(Base):
    """A conversion or value of a metric for a subject. Events belong to no experiment:
    each experiment measuring the metric counts the events its subjects sent after their
    exposure, and CUPED reads the ones before the experiment started."""

    __tablename__ = "experiment_metric_events"
    # The results join each exposed subject to their events of one metric; with the value
    # in the index, a mean is computed from the index alone (a third faster on SQLite).
    __table_args__ = (
        Index(
            "ix_experiment_metric_events_metric_subject",
            "metric",
            "subject",
            "occurred_at",
            "value",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    metric: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(256))
    value: Mapped[float] = mapped_column(Float)
    occurred_at: Mapped[datetime]


class ExperimentChange(Base):
    """Who changed which experiment or cohort when, from what to what. Never updated."""

    __tablename__ = "experiment_changes"
    __table_args__ = (Index("ix_experiment_changes_subject", "subject_kind", "subject_key", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_key: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
