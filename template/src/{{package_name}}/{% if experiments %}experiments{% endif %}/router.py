"""Experiments and cohorts over HTTP: the admin API (admin role, every change audited),
metric events from clients, and the results as JSON or as a page."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from openfeature import api
from pydantic import BaseModel

from ..core.auth.dependencies import ServiceAdminDep
from ..core.database import SessionDep
from ..core.errors import problem_responses
from ..flags.layers import serving_layer
from .dependencies import ExperimentServiceDep, RecorderDep, RunningExperimentDep
from .page import CONTENT_SECURITY_POLICY, results_page
from .results import Results, compute
from .schemas import (
    ChangeRead,
    Cohort,
    CohortBody,
    CohortKey,
    Experiment,
    ExperimentBody,
    ExperimentRead,
    MetricEvent,
    Ship,
)

# The role that runs the service as a whole (APP_AUTH__SERVICE_ADMIN_ROLE).
AdminDep = ServiceAdminDep


class ExposureRead(BaseModel):
    experiment: str
    # The caller's arm; null when they are not in the experiment.
    arm: str | None


router = APIRouter(
    prefix="/api/v1/experiments",
    tags=["experiments"],
    responses=problem_responses(401, 403),
)
cohorts_router = APIRouter(
    prefix="/api/v1/cohorts",
    tags=["experiments"],
    responses=problem_responses(401, 403),
)


@router.get("")
async def list_experiments(_: AdminDep, service: ExperimentServiceDep) -> list[ExperimentRead]:
    return await service.list_all()


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(409, 422))
async def create_experiment(
    principal: AdminDep,
    body: Experiment,
    service: ExperimentServiceDep,
    request: Request,
    response: Response,
) -> ExperimentRead:
    """Creates a draft; ``POST .../start`` starts it."""
    created = await service.create(body, actor=principal.subject)
    response.headers["Location"] = request.url_for("get_experiment", key=created.key).path
    return created


@router.get("/{key}", responses=problem_responses(404))
async def get_experiment(key: str, _: AdminDep, service: ExperimentServiceDep) -> ExperimentRead:
    return await service.get(key)


@router.put("/{key}", responses=problem_responses(404, 409, 422))
async def replace_experiment(
    key: str, body: ExperimentBody, principal: AdminDep, service: ExperimentServiceDep
) -> ExperimentRead:
    """Changes a draft freely; a running experiment keeps its arms, weights, seed,
    namespace and audience (409 naming the field)."""
    return await service.replace(key, body, actor=principal.subject)


@router.delete(
    "/{key}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
async def delete_experiment(key: str, principal: AdminDep, service: ExperimentServiceDep) -> None:
    """Deletes a draft, stopped or shipped experiment and its exposures."""
    await service.delete(key, actor=principal.subject)


@router.post("/{key}/start", responses=problem_responses(404, 409))
async def start_experiment(
    key: str, principal: AdminDep, service: ExperimentServiceDep
) -> ExperimentRead:
    return await service.start(key, actor=principal.subject)


@router.post("/{key}/stop", responses=problem_responses(404, 409))
async def stop_experiment(
    key: str, principal: AdminDep, service: ExperimentServiceDep
) -> ExperimentRead:
    """Everyone reads the flag as without the experiment from now on."""
    return await service.stop(key, actor=principal.subject)


@router.post("/{key}/ship", responses=problem_responses(404, 409, 422))
async def ship_experiment(
    key: str, body: Ship, principal: AdminDep, service: ExperimentServiceDep
) -> ExperimentRead:
    """Serves one arm to everyone (the experiment stops if it still runs)."""
    return await service.ship(key, body.arm, actor=principal.subject)


@router.get("/{key}/changes", responses=problem_responses(404))
async def experiment_changes(
    key: str,
    _: AdminDep,
    service: ExperimentServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ChangeRead]:
    """The audit log of one experiment, newest first."""
    return await service.changes("experiment", key, limit)


@router.post(
    "/{key}/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={
        202: {"description": "Accepted: written within a second"},
        **problem_responses(404, 409, 422),
    },
)
async def record_event(
    key: str, body: MetricEvent, experiment: RunningExperimentDep, recorder: RecorderDep
) -> Response:
    """Records a conversion or value of one of the experiment's metrics for the caller
    (the subject their flag reads target: their token's subject, else their anonymous
    id). Written within a second, not before the answer."""
    if experiment.metric(body.metric) is None:
        metrics = sorted(metric.key for metric in experiment.metrics())
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "metric"),
                    "msg": f"unknown metric {body.metric!r}; the experiment has {metrics}",
                    "input": body.metric,
                }
            ]
        )
    subject = api.get_transaction_context().targeting_key
    if subject:
        recorder.track(body.metric, subject, body.value)
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/{key}/exposures", responses=problem_responses(404, 409))
async def record_exposure(
    key: str, experiment: RunningExperimentDep, request: Request
) -> ExposureRead:
    """For a front end that evaluated flags in bulk (OFREP), which records no exposure:
    call this when the caller actually sees the experiment. Returns their arm, or null
    when they are outside its audience or coverage (nothing is recorded then)."""
    layer = serving_layer(request.app)
    arm = None
    if layer is not None:
        context = layer.context_for(api.get_transaction_context())
        served = layer.resolve_untyped(experiment.key, context)
        arm = served.variant if served is not None else None
    return ExposureRead(experiment=experiment.key, arm=arm)


@router.get("/{key}/results", responses=problem_responses(404))
async def experiment_results(
    key: str, _: AdminDep, service: ExperimentServiceDep, session: SessionDep, request: Request
) -> Results:
    """Per metric and arm: n, mean or rate, lifts with confidence intervals, p-values
    (Holm-adjusted), power, and the sample-ratio check."""
    experiment = await service.get(key)
    return await compute(session, experiment, request.app.state.settings.experiments.alpha)


@router.get(
    "/{key}/results/page",
    response_class=HTMLResponse,
    responses=problem_responses(404),
)
async def experiment_results_page(
    key: str, _: AdminDep, service: ExperimentServiceDep, session: SessionDep, request: Request
) -> HTMLResponse:
    """The results as a page: a table per metric and each lift's interval as a plot."""
    experiment = await service.get(key)
    results = await compute(session, experiment, request.app.state.settings.experiments.alpha)
    return HTMLResponse(
        results_page(experiment, results),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


@cohorts_router.get("")
async def list_cohorts(_: AdminDep, service: ExperimentServiceDep) -> list[Cohort]:
    return await service.list_cohorts()


@cohorts_router.get("/{key}", responses=problem_responses(404))
async def get_cohort(key: str, _: AdminDep, service: ExperimentServiceDep) -> Cohort:
    return await service.get_cohort(key)


@cohorts_router.put(
    "/{key}", responses={201: {"description": "Created"}, **problem_responses(409, 422)}
)
async def put_cohort(
    key: CohortKey,
    body: CohortBody,
    principal: AdminDep,
    service: ExperimentServiceDep,
    response: Response,
) -> Cohort:
    """Creates or replaces a cohort; usable at once in audiences and flag rules
    (``cohorts`` ``in`` [key])."""
    cohort, created = await service.put_cohort(key, body, actor=principal.subject)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return cohort


@cohorts_router.delete(
    "/{key}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
async def delete_cohort(key: str, principal: AdminDep, service: ExperimentServiceDep) -> None:
    await service.delete_cohort(key, actor=principal.subject)


@cohorts_router.get("/{key}/changes", responses=problem_responses(404))
async def cohort_changes(
    key: str,
    _: AdminDep,
    service: ExperimentServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ChangeRead]:
    return await service.changes("cohort", key, limit)
