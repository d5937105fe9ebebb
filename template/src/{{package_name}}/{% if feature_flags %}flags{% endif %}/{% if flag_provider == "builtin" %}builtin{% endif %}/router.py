"""Admin API for flags: change them at run time, no deploy. Admin role required."""

from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ...core.auth.dependencies import ServiceAdminDep
from ...core.errors import problem_responses
from .dependencies import FlagServiceDep
from .flagd_format import SCHEMA_URL, FlagdFormatError, export_flags, import_flags
from .schemas import FlagBody, FlagChangeRead, FlagDefinition, VariantName

# The role that runs the service as a whole (APP_AUTH__SERVICE_ADMIN_ROLE).
AdminDep = ServiceAdminDep

router = APIRouter(
    prefix="/api/v1/flags",
    tags=["flags"],
    responses=problem_responses(401, 403),
)


class FlagPatch(BaseModel):
    """Fields to change; the result is validated as a whole definition."""

    model_config = ConfigDict(extra="forbid")

    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    enabled: bool | None = None
    default_variant: VariantName | None = None


class RolloutChange(BaseModel):
    """Serve ``variant`` to ``percent`` of the users no rule matched; the rest get the
    default variant. Sticky per user; raising the percentage only adds users."""

    model_config = ConfigDict(extra="forbid")

    variant: VariantName
    percent: Annotated[int, Field(ge=0, le=100)]


def _changed(current: FlagDefinition, fields: dict[str, Any]) -> FlagBody:
    """The changed definition, or a 422 naming what is wrong with it (not a 500)."""
    try:
        return current.changed(fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from exc


def _invalid_variant(variant: str, message: str) -> NoReturn:
    # Named after the request's own field, not the fallthrough it would have produced.
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("body", "variant"), "msg": message, "input": variant}]
    )


@router.get("")
async def list_flags(_: AdminDep, service: FlagServiceDep) -> list[FlagDefinition]:
    return await service.list_all()


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(409, 422))
async def create_flag(
    principal: AdminDep,
    body: FlagDefinition,
    service: FlagServiceDep,
    request: Request,
    response: Response,
) -> FlagDefinition:
    created = await service.create(body, actor=principal.subject)
    # A path, not a URL built from a Host header the client chose.
    response.headers["Location"] = request.url_for("get_flag", key=created.key).path
    return created


@router.get("/{key}", responses=problem_responses(404))
async def get_flag(key: str, _: AdminDep, service: FlagServiceDep) -> FlagDefinition:
    return await service.get(key)


@router.put("/{key}", responses=problem_responses(404, 409, 422))
async def replace_flag(
    key: str, body: FlagBody, principal: AdminDep, service: FlagServiceDep
) -> FlagDefinition:
    return (await service.replace(key, body, actor=principal.subject)).definition


@router.patch("/{key}", responses=problem_responses(404, 409, 422))
async def patch_flag(
    key: str, body: FlagPatch, principal: AdminDep, service: FlagServiceDep
) -> FlagDefinition:
    # Only the fields sent: an explicit null is checked (and refused) like any value.
    changes = body.model_dump(exclude_unset=True)

    def patched(current: FlagDefinition) -> FlagBody:
        return _changed(current, changes)

    return (await service.update(key, patched, actor=principal.subject)).definition


@router.put("/{key}/rollout", responses=problem_responses(404, 409, 422))
async def set_rollout(
    key: str, body: RolloutChange, principal: AdminDep, service: FlagServiceDep
) -> FlagDefinition:
    def rolled_out(current: FlagDefinition) -> FlagBody:
        try:
            weights = current.rollout_weights(body.variant, body.percent)
        except ValueError as exc:
            _invalid_variant(body.variant, str(exc))
        return _changed(current, {"fallthrough": {"weights": weights}})

    return (await service.update(key, rolled_out, actor=principal.subject)).definition


@router.delete(
    "/{key}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
async def delete_flag(key: str, principal: AdminDep, service: FlagServiceDep) -> None:
    await service.delete(key, actor=principal.subject)


@router.get("/{key}/changes", responses=problem_responses(404))
async def flag_changes(
    key: str,
    _: AdminDep,
    service: FlagServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[FlagChangeRead]:
    return await service.changes(key, limit)


# --------------------------------------------------------------------------- #
# flagd's flag-definition format (flagd_format.py)
# --------------------------------------------------------------------------- #


class FlagdDocument(BaseModel):
    """A flagd flag-definition document: its flags by key (flagd_format.py says which
    flags it takes)."""

    # Other members are refused by the import itself, naming them.
    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})

    schema_url: str = Field(
        default=SCHEMA_URL, alias="$schema", json_schema_extra={"const": SCHEMA_URL}
    )
    flags: dict[str, Any]


class FlagdImportResult(BaseModel):
    """The keys of the imported flags, by what the import did to them."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]


@router.get("/export/flagd")
async def export_flagd(_: AdminDep, service: FlagServiceDep) -> dict[str, Any]:
    """Every flag as a flagd flag-definition document: flagd serves it unchanged, with the
    same results (percentage buckets included)."""
    return export_flags(await service.list_all())


@router.post("/import/flagd", responses=problem_responses(422))
async def import_flagd(
    document: FlagdDocument, principal: AdminDep, service: FlagServiceDep
) -> FlagdImportResult:
    """Creates or replaces the flags of a flagd document; flags it does not name stay.

    Takes what the export writes, and flags without targeting. All or nothing: a flag
    using anything else is a 422 naming the flag and what is unsupported.
    """
    try:
        definitions = import_flags(document.model_dump(by_alias=True, exclude_unset=True))
    except FlagdFormatError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", *problem.location),
                    "msg": problem.message,
                    "input": None,
                }
                for problem in exc.problems
            ]
        ) from exc
    outcome = await service.import_(definitions, actor=principal.subject)
    return FlagdImportResult(
        created=sorted(key for key, result in outcome.items() if result == "created"),
        updated=sorted(key for key, result in outcome.items() if result == "updated"),
        unchanged=sorted(key for key, result in outcome.items() if result == "unchanged"),
    )
