"""Predictions, and the model registry over HTTP.

Predicting takes any authenticated caller; reading the registry too. Moving an alias,
rolling back, splitting traffic, and the audit log and drift readings take the service
admin role (APP_AUTH__SERVICE_ADMIN_ROLE), and every change is audited. Versions are
registered from the command line (``models register``), where the artifact file is.
"""

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.exceptions import RequestValidationError

from ..core.auth.dependencies import PrincipalDep, ServiceAdminDep
from ..core.errors import problem_responses
from .dependencies import ModelNamePath, ModelRegistryDep, ModelServerDep, VersionPath
from .schemas import (
    Alias,
    AliasMove,
    ChangeRead,
    DriftRead,
    ModelRead,
    PredictRequest,
    PredictResponse,
    Split,
    VersionRead,
    prediction_output,
)
from .signature import InputError, Loc

router = APIRouter(prefix="/api/v1/models", tags=["models"], responses=problem_responses(401, 403))


@router.post(
    "/{name}/predict",
    response_model_exclude_none=True,
    responses=problem_responses(404, 409, 422, 503),
)
async def predict(
    name: ModelNamePath, body: PredictRequest, principal: PrincipalDep, server: ModelServerDep
) -> PredictResponse:
    """Answers one row (``input``) or many (``inputs``) with the model's champion, or its
    challenger for callers in the challenger's share (sticky per ``routing_key``, else per
    token subject). Each row must have exactly the features of the version's signature
    (``GET /api/v1/models/{name}/versions/{version}``); a 422 names each wrong field."""
    single = body.input is not None
    rows = [body.input] if body.input is not None else list(body.inputs or [])
    locs: list[Loc] = (
        [("body", "input")] if single else [("body", "inputs", i) for i in range(len(rows))]
    )
    try:
        loaded, role, outputs, prediction_id = await server.predict(
            name, rows, locs, body.routing_key or principal.subject
        )
    except InputError as exc:
        raise RequestValidationError(exc.errors) from None
    predictions = [prediction_output(output) for output in outputs]
    return PredictResponse(
        model=name,
        version=loaded.version,
        served_by=role,
        prediction_id=prediction_id,
        prediction=predictions[0] if single else None,
        predictions=None if single else predictions,
    )


@router.get("")
async def list_models(_: PrincipalDep, registry: ModelRegistryDep) -> list[ModelRead]:
    return await registry.list_models()


@router.get("/{name}", responses=problem_responses(404))
async def get_model(name: ModelNamePath, _: PrincipalDep, registry: ModelRegistryDep) -> ModelRead:
    return await registry.get(name)


@router.get("/{name}/versions", responses=problem_responses(404))
async def list_versions(
    name: ModelNamePath, _: PrincipalDep, registry: ModelRegistryDep
) -> list[VersionRead]:
    return await registry.versions(name)


@router.get("/{name}/versions/{version}", responses=problem_responses(404))
async def get_version(
    name: ModelNamePath, version: VersionPath, _: PrincipalDep, registry: ModelRegistryDep
) -> VersionRead:
    return await registry.version(name, version)


@router.put("/{name}/aliases/{alias}", responses=problem_responses(404, 422))
async def promote(
    name: ModelNamePath,
    alias: Alias,
    body: AliasMove,
    principal: ServiceAdminDep,
    registry: ModelRegistryDep,
) -> ModelRead:
    """Points the alias at a version: every process serves it within a poll
    (``APP_ML__POLL_SECONDS``) and the time it takes to load it."""
    return await registry.promote(name, alias, body.version, actor=principal.subject)


@router.delete("/{name}/aliases/{alias}", responses=problem_responses(404, 409))
async def retire(
    name: ModelNamePath, alias: Alias, principal: ServiceAdminDep, registry: ModelRegistryDep
) -> ModelRead:
    """Removes a challenger or a shadow; the champion is replaced, never removed."""
    return await registry.retire(name, alias, actor=principal.subject)


@router.post(
    "/{name}/aliases/{alias}/rollback",
    status_code=status.HTTP_200_OK,
    responses=problem_responses(404, 409),
)
async def rollback(
    name: ModelNamePath, alias: Alias, principal: ServiceAdminDep, registry: ModelRegistryDep
) -> ModelRead:
    """Moves the alias back to the version it pointed at before its last promotion."""
    return await registry.rollback(name, alias, actor=principal.subject)


@router.put("/{name}/split", responses=problem_responses(404, 409, 422))
async def split(
    name: ModelNamePath, body: Split, principal: ServiceAdminDep, registry: ModelRegistryDep
) -> ModelRead:
    """Sends ``challenger_percent`` of callers (sticky per routing key) to the challenger."""
    return await registry.split(name, body.challenger_percent, actor=principal.subject)


@router.get("/{name}/changes", responses=problem_responses(404))
async def list_changes(
    name: ModelNamePath,
    _: ServiceAdminDep,
    registry: ModelRegistryDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ChangeRead]:
    """The audit log: registrations, promotions, rollbacks and splits, newest first."""
    return await registry.changes(name, limit)


@router.get("/{name}/drift", responses=problem_responses(404))
async def drift(name: ModelNamePath, _: ServiceAdminDep, server: ModelServerDep) -> list[DriftRead]:
    """Each served version's input drift (PSI per feature) as this process measured it
    on its last inputs; every process exports its own to the metrics."""
    return server.drift(name)
