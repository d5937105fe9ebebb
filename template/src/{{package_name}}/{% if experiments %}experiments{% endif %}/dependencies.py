"""``ExperimentServiceDep`` for the admin API; ``RecorderDep`` and ``RunningExperimentDep``
for the events and exposures clients send."""

from typing import Annotated

from fastapi import Depends, Request

from ..core.database import SessionDep
from ..core.errors import ConflictError, NotFoundError
from .recorder import Recorder
from .registry import ExperimentRegistry
from .schemas import ExperimentRead
from .service import ExperimentService


async def experiment_service(session: SessionDep, request: Request) -> ExperimentService:
    return ExperimentService(session, request.app.state.experiment_sync.changed)


def recorder(request: Request) -> Recorder:
    found: Recorder = request.app.state.experiment_recorder
    return found


def running_experiment(key: str, request: Request) -> ExperimentRead:
    """The running experiment ``key`` as this process serves it: no database read, so a
    client's event costs what its buffering costs."""
    registry: ExperimentRegistry = request.app.state.experiment_registry
    experiment = registry.definition(key)
    if experiment is None:
        raise NotFoundError(f"no experiment {key!r}")
    if experiment.status != "running":
        raise ConflictError(
            f"experiment {key!r} is {experiment.status}; it takes events and exposures while "
            "it runs",
            field="status",
        )
    return experiment


RunningExperimentDep = Annotated[ExperimentRead, Depends(running_experiment)]
ExperimentServiceDep = Annotated[ExperimentService, Depends(experiment_service)]
RecorderDep = Annotated[Recorder, Depends(recorder)]
