"""Experiments and cohorts as the admin API, the database and the CLI exchange them.

A definition is validated as a whole (weights adding up to 1, a namespace range inside
[0, 1], known arms), and every error names its field, so a 422 says what to fix.
"""

import math
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ..flags.targeting import Condition, error_details, field_error

# The key is the flag key code reads: the same pattern as flag keys.
ExperimentKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
ArmKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
MetricKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
CohortKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Status = Literal["draft", "running", "stopped", "shipped"]
# Weights are stored as given; "adds up to 1" allows for decimal fractions (1/3 each).
WEIGHT_TOLERANCE = 1e-6


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(Strict):
    """One arm. The first arm of an experiment is its control."""

    key: ArmKey
    weight: Share
    # What a flag read returns for this arm; None serves the arm's key (a string read).
    value: JsonValue = None

    def served(self) -> JsonValue:
        return self.key if self.value is None else self.value


class Namespace(Strict):
    """A range of a named namespace: experiments with disjoint ranges of one namespace
    never share a user (mutually exclusive experiments)."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]
    start: Share
    end: Share

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start >= self.end:
            raise field_error("Experiment", "end", self.end, "must be greater than start")
        return self


class Audience(Strict):
    """Who may enter: every condition holds and, when named, the caller is in the cohort.

    Conditions are the flags' (flags/targeting.py), on the same context; ``cohorts`` is a
    list attribute there too.
    """

    conditions: Annotated[list[Condition], Field(max_length=20)] = []
    cohort: CohortKey | None = None


class Metric(Strict):
    """A metric the results report: a conversion (did the subject send the event at all)
    or a mean (the sum of the event's values per exposed subject)."""

    key: MetricKey
    kind: Literal["conversion", "mean"]
    # The relative lift the experiment should be able to detect: the results report the
    # power to detect it at the current sample size.
    target_relative_lift: Annotated[float, Field(gt=0.0, le=10.0)] | None = None


class ExperimentBody(Strict):
    """An experiment's definition without its key (the API takes the key from the path)."""

    hypothesis: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    arms: Annotated[list[Arm], Field(min_length=2, max_length=10)]
    # The hash seed; empty means the experiment key. Changing it reshuffles everyone.
    seed: Annotated[str, StringConstraints(max_length=100)] = ""
    # Share of the audience that enters; the rest read the flag as if there were no
    # experiment. Raising it moves nobody between arms.
    coverage: Share = 1.0
    namespace: Namespace | None = None
    audience: Audience = Audience()
    primary_metrics: Annotated[list[Metric], Field(min_length=1, max_length=10)]
    guardrail_metrics: Annotated[list[Metric], Field(max_length=10)] = []
    # Results: always-valid (sequential) inference, safe to look at every day.
    sequential: bool = False
    # The total sample size the sequential intervals are tightest around.
    planned_sample_size: Annotated[int, Field(ge=100, le=1_000_000_000)] | None = None
    # CUPED: each subject's value of the metric in the days before the experiment started
    # as a covariate, which cuts the variance without bias.
    cuped_days: Annotated[int, Field(ge=1, le=365)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        errors = []
        total = sum(arm.weight for arm in self.arms)
        if not math.isclose(total, 1.0, abs_tol=WEIGHT_TOLERANCE):
            message = f"arm weights must add up to 1, not {total:g}"
            errors.append(error_details(("arms",), total, "weights_total", message))
        kinds = {_json_kind(arm.served()) for arm in self.arms}
        if len(kinds) > 1:
            # A read of one type would get the default for the other arms' callers,
            # without an exposure: a sample ratio mismatch built in.
            message = f"arm values must all be of one type, not {sorted(kinds)}"
            errors.append(error_details(("arms",), sorted(kinds), "mixed_types", message))
        seen: set[str] = set()
        for index, arm in enumerate(self.arms):
            if arm.key in seen:
                message = f"arm {arm.key!r} is listed twice"
                errors.append(error_details(("arms", index, "key"), arm.key, "duplicate", message))
            seen.add(arm.key)
        seen_metrics: set[str] = set()
        for field, metrics in (
            ("primary_metrics", self.primary_metrics),
            ("guardrail_metrics", self.guardrail_metrics),
        ):
            for index, metric in enumerate(metrics):
                if metric.key in seen_metrics:
                    message = f"metric {metric.key!r} is listed twice"
                    loc = (field, index, "key")
                    errors.append(error_details(loc, metric.key, "duplicate", message))
                seen_metrics.add(metric.key)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def metrics(self) -> tuple[Metric, ...]:
        return (*self.primary_metrics, *self.guardrail_metrics)

    def metric(self, key: str) -> Metric | None:
        return next((metric for metric in self.metrics() if metric.key == key), None)


class Experiment(ExperimentBody):
    key: ExperimentKey


class ExperimentRead(Experiment):
    """A definition with its state: when it ran, and which arm shipped."""

    status: Status
    started_at: datetime | None
    stopped_at: datetime | None
    shipped_arm: str | None


class Ship(Strict):
    """Serve ``arm`` to every caller from now on; exposures stop."""

    arm: ArmKey


class CohortBody(Strict):
    """Callers named in ``members`` (targeting keys), or meeting every condition."""

    description: Annotated[str, StringConstraints(max_length=500)] = ""
    members: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=256)]],
        # As many as one JSON array may hold under request protection's default limit.
        Field(max_length=1000),
    ] = []
    conditions: Annotated[list[Condition], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _defines_someone(self) -> Self:
        if not self.members and not self.conditions:
            raise field_error(
                "Experiment", "members", self.members, "give members, conditions or both"
            )
        return self


class Cohort(CohortBody):
    key: CohortKey


class MetricEvent(Strict):
    """A conversion (value 1, the default) or a numeric value for the calling subject."""

    metric: MetricKey
    value: Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)] = 1.0


class ChangeRead(BaseModel):
    """One entry of the audit log: who changed what, when, from what to what."""

    id: int
    subject_kind: Literal["experiment", "cohort"]
    subject_key: str
    actor: str
    action: str
    before: dict[str, JsonValue] | None
    after: dict[str, JsonValue] | None
    changed_at: datetime


def _json_kind(value: JsonValue) -> str:
    """The type an OpenFeature read needs for ``value`` (an arm without a value is its key)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"
