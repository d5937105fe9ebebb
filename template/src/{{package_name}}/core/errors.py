"""Errors as RFC 9457 problem details (``application/problem+json``).

Domain code raises :class:`ProblemError` subclasses; FastAPI's own HTTP and validation
errors are converted to the same shape, so clients handle one error format.
"""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .database import RETRY_AFTER_SECONDS, database_problem
from .http_semantics import allowed_methods

PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ProblemDetail(BaseModel):
    """The documented shape of every error response (RFC 9457 plus two extensions)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="422: what was invalid; 409: the field in conflict"
    )
    request_id: str | None = Field(default=None, description="500: quote it when reporting")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring problem documents for ``statuses``."""
    return {
        status: {"model": ProblemDetail, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the service sends: problem+json for errors.

    FastAPI files every declared error model under ``application/json`` and adds its own
    422 schema; this rewrites them to ``application/problem+json`` with
    :class:`ProblemDetail`, and declares the 422, 500 and 503 every operation can answer,
    and the 400 of every operation with a body. An error response declared with a model
    of its own (OFREP's bodies) is what the route sends, so it is left as declared.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        problem = {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}
        for operation in _operations(schema):
            for parameter in operation.get("parameters", []):
                _never_null(parameter.get("schema", {}))
            responses = operation.setdefault("responses", {})
            responses.setdefault("500", {"description": "Internal Server Error"})
            responses.setdefault("503", {"description": "Service Unavailable"})
            # Any request can carry a NUL character, which is refused before routing.
            responses.setdefault("422", {"description": "Unprocessable Content"})
            if "requestBody" in operation:
                # A body that is not text in its declared encoding never reaches validation.
                responses.setdefault("400", {"description": "The body could not be read"})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and _documents_a_problem(response):
                    response["content"] = {PROBLEM_CONTENT_TYPE: problem}
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        components.update(_problem_schemas())
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _never_null(schema: dict[str, Any]) -> None:
    """A path, query or header parameter is left out to mean "none"; it is never null.

    FastAPI documents an optional parameter (``str | None``) as "string or null", and
    clients that believe it send the text "null", which the service refuses.
    """
    options = schema.get("anyOf")
    if not options:
        return
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) == len(options):
        return
    if len(kept) == 1:
        del schema["anyOf"]
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return [
        operation
        for path in schema.get("paths", {}).values()
        for method, operation in path.items()
        if method in methods
    ]


# Error schemas that stand for a problem document: ours, and FastAPI's 422 (which the
# validation handler answers as a problem).
_PROBLEM_REFS = frozenset(
    f"#/components/schemas/{name}" for name in ("ProblemDetail", "HTTPValidationError")
)


def _documents_a_problem(response: dict[str, Any]) -> bool:
    """Whether the route left this error's body to us: no schema, or a problem one. Any
    other schema is what the route really sends, so the document must keep saying it."""
    schemas = [media.get("schema") for media in response.get("content", {}).values()]
    return all(not schema or schema.get("$ref") in _PROBLEM_REFS for schema in schemas)


def _problem_schemas() -> dict[str, Any]:
    schema = ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "ProblemDetail": schema}


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    problem = ProblemDetail(
        title=HTTPStatus(status).phrase, status=status, detail=detail, instance=instance
    )
    body = {**problem.model_dump(exclude_none=True), **extensions}
    return JSONResponse(
        jsonable_encoder(body),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_CONTENT_TYPE,
    )


class ProblemError(Exception):
    """An error the client caused or must know about; rendered as a problem document."""

    status: int = 400

    def __init__(
        self, detail: str, *, headers: Mapping[str, str] | None = None, field: str | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        # The request field the error is about, when there is one: clients show it there.
        self.field = field


class NotFoundError(ProblemError):
    status = 404


class ConflictError(ProblemError):
    status = 409


class PreconditionFailedError(ProblemError):
    status = 412


class UnauthorizedError(ProblemError):
    status = 401

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        # RFC 6750 section 3: name the scheme, and what went wrong when a token was sent.
        challenge = "Bearer"
        if error is not None:
            challenge += f' error="{error}", error_description="{detail}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class ForbiddenError(ProblemError):
    status = 403


async def _problem_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for this type only
    extensions: dict[str, Any] = {}
    if exc.field is not None:
        kind = HTTPStatus(exc.status).phrase.lower().replace(" ", "_")
        extensions["errors"] = [FieldError(field=exc.field, message=exc.detail, type=kind)]
    return problem_response(
        exc.status, exc.detail, instance=request.url.path, headers=exc.headers, **extensions
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    if exc.status_code == 400 and (unauthenticated := await _unauthenticated(request)):
        return await _problem_error(request, unauthenticated)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        methods = allowed_methods(request.app.router.routes, request.scope)
        if methods is not None:
            headers["Allow"] = ", ".join(methods)
    detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
    return problem_response(exc.status_code, detail, instance=request.url.path, headers=headers)


async def _unauthenticated(request: Request) -> ProblemError | None:
    """The 401 a route that needs a token owes an anonymous caller whose body could not
    be parsed: FastAPI parses the body before it runs any dependency."""
    # Imported here: the auth dependencies raise this module's errors.
    from .auth.dependencies import authentication_problem

    return await authentication_problem(request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    unparsed = any(error["type"] == "json_invalid" for error in exc.errors())
    if unparsed and (unauthenticated := await _unauthenticated(request)):
        return await _problem_error(request, unauthenticated)
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    return problem_response(
        422,
        "The request is invalid; see 'errors'.",
        instance=request.url.path,
        errors=errors,
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    detail = database_problem(request.app, exc)
    if detail is None:
        raise exc  # a fault, not an outage: the last-resort handler logs it and answers 500
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return problem_response(503, detail, instance=request.url.path, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
