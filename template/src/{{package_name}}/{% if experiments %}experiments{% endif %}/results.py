"""An experiment's results: per metric and arm, from the database in one query each.

Each exposed subject contributes one value per metric: for a conversion, whether they
sent the event at all after their exposure; for a mean, the sum of the event's values
after their exposure (until the experiment stopped). With CUPED, the same quantity over
the ``cuped_days`` before the experiment started is the subject's covariate. The
database returns only sufficient statistics per arm (n, sums, sums of squares and
products), so a million events cost one grouped scan, not a million rows in Python.

The comparisons (statistics.py) are against the first arm, the control; their p-values
are Holm-adjusted over every treatment arm and metric, primary and guardrail alike.
"""

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, case, func, literal, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.database import utcnow
from .models import Exposure, MetricEventRow
from .schemas import ExperimentRead, Metric
from .statistics import ArmData, compare, cuped_theta, holm, sample_ratio_p_value

# A sample ratio this unlikely under the configured weights means the assignment or the
# exposure logging is broken, not bad luck (the common threshold, Fabijan et al. 2019).
SAMPLE_RATIO_ALARM = 0.001


class ArmExposures(BaseModel):
    arm: str
    weight: float
    exposures: int


class ArmMetric(BaseModel):
    arm: str
    n: int
    # The conversion rate or the mean per exposed subject (CUPED-adjusted with CUPED).
    mean: float


class Lift(BaseModel):
    """One treatment arm against the control, for one metric."""

    arm: str
    control: str
    absolute_lift: float
    absolute_ci: tuple[float, float]
    relative_lift: float | None
    relative_ci: tuple[float, float] | None
    p_value: float
    # Holm-adjusted over every comparison of the experiment; ``significant`` uses it.
    adjusted_p_value: float
    significant: bool
    # The smallest absolute lift detectable with 80 % power at the current sample size.
    minimum_detectable_effect: float | None
    # The power to detect the metric's target_relative_lift at the current sample size.
    power: float | None
    variance_reduction: float | None


class MetricResult(BaseModel):
    metric: str
    kind: Literal["conversion", "mean"]
    role: Literal["primary", "guardrail"]
    arms: list[ArmMetric]
    lifts: list[Lift]


class Results(BaseModel):
    experiment: str
    status: str
    started_at: datetime | None
    stopped_at: datetime | None
    computed_at: datetime
    alpha: float
    sequential: bool
    cuped: bool
    arms: list[ArmExposures]
    sample_ratio_p_value: float
    sample_ratio_mismatch: bool
    metrics: list[MetricResult]


async def arm_data(
    session: AsyncSession, experiment: ExperimentRead, metric: Metric
) -> dict[str, ArmData]:
    """Sufficient statistics per arm for ``metric``, over the exposed subjects."""
    event = MetricEventRow
    after_exposure: ColumnElement[bool] = event.occurred_at >= Exposure.exposed_at
    if experiment.stopped_at is not None:
        after_exposure = and_(after_exposure, event.occurred_at <= experiment.stopped_at)
    lower_bound = experiment.started_at or datetime.min.replace(tzinfo=utcnow().tzinfo)
    before_start: ColumnElement[bool] = literal(False)
    if experiment.cuped_days is not None and experiment.started_at is not None:
        lower_bound = experiment.started_at - timedelta(days=experiment.cuped_days)
        before_start = event.occurred_at < experiment.started_at
    outcome: ColumnElement[float]
    covariate: ColumnElement[float]
    if metric.kind == "conversion":
        outcome = func.max(case((after_exposure, 1.0), else_=0.0))
        covariate = func.max(case((before_start, 1.0), else_=0.0))
    else:
        outcome = func.sum(case((after_exposure, event.value), else_=0.0))
        covariate = func.sum(case((before_start, event.value), else_=0.0))
    per_subject = (
        select(
            Exposure.arm.label("arm"),
            func.coalesce(outcome, 0.0).label("y"),
            func.coalesce(covariate, 0.0).label("x"),
        )
        .select_from(Exposure)
        .outerjoin(
            event,
            and_(
                event.subject == Exposure.subject,
                event.metric == metric.key,
                event.occurred_at >= lower_bound,
            ),
        )
        .where(Exposure.experiment_key == experiment.key)
        .group_by(Exposure.id, Exposure.arm)
        .subquery()
    )
    y, x = per_subject.c.y, per_subject.c.x
    rows = await session.execute(
        select(
            per_subject.c.arm,
            func.count(),
            func.sum(y),
            func.sum(y * y),
            func.sum(x),
            func.sum(x * x),
            func.sum(x * y),
        )
        .where(true())
        .group_by(per_subject.c.arm)
    )
    return {
        arm: ArmData(
            n=int(n),
            sum_y=float(sum_y or 0),
            sum_y2=float(sum_y2 or 0),
            sum_x=float(sum_x or 0),
            sum_x2=float(sum_x2 or 0),
            sum_xy=float(sum_xy or 0),
        )
        for arm, n, sum_y, sum_y2, sum_x, sum_x2, sum_xy in rows
    }


async def exposure_counts(session: AsyncSession, key: str) -> dict[str, int]:
    rows = await session.execute(
        select(Exposure.arm, func.count())
        .where(Exposure.experiment_key == key)
        .group_by(Exposure.arm)
    )
    return {arm: int(count) for arm, count in rows}


def sample_ratio(experiment: ExperimentRead, counts: dict[str, int]) -> float:
    """The p-value of the exposure counts under the arms' weights (1.0 before any)."""
    observed = [counts.get(arm.key, 0) for arm in experiment.arms]
    weights = [arm.weight for arm in experiment.arms]
    if sum(observed) == 0:
        return 1.0
    # Arms of weight 0 expect nobody; they leave the test (and any exposure there shows
    # up as a mismatch in the others' shares).
    kept = [(count, weight) for count, weight in zip(observed, weights, strict=True) if weight > 0]
    if len(kept) < 2:
        # One arm takes everyone: there is no ratio to get wrong.
        return 1.0
    return sample_ratio_p_value([count for count, _ in kept], [weight for _, weight in kept])


async def compute(session: AsyncSession, experiment: ExperimentRead, alpha: float) -> Results:
    counts = await exposure_counts(session, experiment.key)
    p_sample_ratio = sample_ratio(experiment, counts)
    control = experiment.arms[0].key
    treatments = [arm.key for arm in experiment.arms[1:]]
    cuped = experiment.cuped_days is not None and experiment.started_at is not None
    empty = ArmData(n=0, sum_y=0.0, sum_y2=0.0)
    pending: list[tuple[MetricResult, list[dict[str, object]]]] = []
    for role, metrics in (
        ("primary", experiment.primary_metrics),
        ("guardrail", experiment.guardrail_metrics),
    ):
        for metric in metrics:
            data = await arm_data(session, experiment, metric)
            per_arm = {arm.key: data.get(arm.key, empty) for arm in experiment.arms}
            theta = cuped_theta(list(per_arm.values())) if cuped else None
            lifts: list[dict[str, object]] = []
            means: dict[str, float] = {}
            for treatment in treatments:
                comparison = compare(
                    per_arm[control],
                    per_arm[treatment],
                    metric.kind,
                    alpha=alpha,
                    cuped=theta is not None,
                    cuped_theta=theta,
                    sequential=experiment.sequential,
                    planned_sample_size=experiment.planned_sample_size,
                    target_relative_lift=metric.target_relative_lift,
                )
                means[control] = comparison.control_mean
                means[treatment] = comparison.treatment_mean
                lifts.append(
                    {
                        "arm": treatment,
                        "control": control,
                        "absolute_lift": comparison.absolute_lift,
                        "absolute_ci": comparison.absolute_ci,
                        "relative_lift": comparison.relative_lift,
                        "relative_ci": comparison.relative_ci,
                        "p_value": comparison.p_value,
                        "minimum_detectable_effect": comparison.minimum_detectable_effect,
                        "power": comparison.power,
                        "variance_reduction": comparison.variance_reduction,
                    }
                )
            arms = [
                ArmMetric(arm=arm, n=per_arm[arm].n, mean=means.get(arm, 0.0)) for arm in per_arm
            ]
            result = MetricResult(
                metric=metric.key, kind=metric.kind, role=role, arms=arms, lifts=[]
            )
            pending.append((result, lifts))
    adjusted = iter(holm([float(lift["p_value"]) for _, lifts in pending for lift in lifts]))  # type: ignore[arg-type]
    for result, lifts in pending:
        for lift in lifts:
            p_adjusted = next(adjusted)
            result.lifts.append(
                Lift.model_validate(
                    {**lift, "adjusted_p_value": p_adjusted, "significant": p_adjusted < alpha}
                )
            )
    return Results(
        experiment=experiment.key,
        status=experiment.status,
        started_at=experiment.started_at,
        stopped_at=experiment.stopped_at,
        computed_at=utcnow(),
        alpha=alpha,
        sequential=experiment.sequential,
        cuped=cuped,
        arms=[
            ArmExposures(arm=arm.key, weight=arm.weight, exposures=counts.get(arm.key, 0))
            for arm in experiment.arms
        ],
        sample_ratio_p_value=p_sample_ratio,
        sample_ratio_mismatch=p_sample_ratio < SAMPLE_RATIO_ALARM,
        metrics=[result for result, _ in pending],
    )
