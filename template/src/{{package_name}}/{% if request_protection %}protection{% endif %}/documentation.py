"""What the slice changes in the OpenAPI document, and whether the docs are served."""

from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route

from ..core.errors import PROBLEM_CONTENT_TYPE
from .settings import ProtectionSettings

_PROBLEM = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
_RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {
        "description": 'The rate limits applied: "name";q=<quota>;w=<window seconds>',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'Where each stands: "name";r=<remaining>;t=<seconds to reset>',
        "schema": {"type": "string"},
    },
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}
# Refusals any operation can receive: the deny rules, the URL and header limits.
_EVERY_OPERATION = {
    "403": "Refused by a deny rule",
    "414": "The URL is too long",
    "431": "Too many or too large header fields",
}
# Refusals of the body: its media type, its shape and how long it took to arrive.
_WITH_BODY = {
    "408": "The body did not arrive in time",
    "415": "The body's media type is not accepted",
}


def document_protection(app: FastAPI, settings: ProtectionSettings) -> None:
    """Declares the refusals and the RateLimit headers on every operation."""
    generate = app.openapi
    exempt = tuple(settings.rate_limits.exempt_paths)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                _declare(operation, limited=not path.startswith(exempt))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(operation: dict[str, Any], *, limited: bool) -> None:
    responses = operation.setdefault("responses", {})
    refusals = dict(_EVERY_OPERATION)
    if "requestBody" in operation:
        refusals.update(_WITH_BODY)
    if "requestBody" in operation:
        # The JSON limits refuse a body with 400 before the route, whose own 400 (OFREP's,
        # say) may have another shape: both are declared.
        refusals["400"] = "The body is malformed or nested too deep"
    for status, description in refusals.items():
        _declare_problem(responses, status, description)
    # Too many requests in progress from one client: every operation, limited or not.
    _declare_problem(responses, "429", "Too many requests")
    responses["429"]["headers"] = {**responses["429"].get("headers", {}), **_RETRY_AFTER}
    if not limited:
        return
    for status, response in responses.items():
        if status.startswith("2"):
            response["headers"] = {**response.get("headers", {}), **_RATE_LIMIT_HEADERS}


def _declare_problem(responses: dict[str, Any], status: str, description: str) -> None:
    """A problem document among the answers with ``status``, beside any declared shape."""
    response = responses.setdefault(status, {"description": description})
    response["content"] = {**_PROBLEM, **response.get("content", {})}


def docs_enabled(app: FastAPI, settings: ProtectionSettings) -> bool:
    if settings.api_docs is not None:
        return settings.api_docs
    return bool(app.state.settings.environment != "production")


# FastAPIOffline's pages (core/app.py keeps its default paths) and the mount of their
# scripts and styles, which it names.
DOCS_PAGES = ("/docs", "/redoc")
DOCS_ASSETS = "static-offline-docs"


def docs_pages(app: FastAPI) -> frozenset[str]:
    """The HTML pages of the API docs."""
    return frozenset([*DOCS_PAGES, app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"])


def remove_docs(app: FastAPI) -> None:
    """Takes /docs, /redoc, /openapi.json and the docs' assets off the application."""
    paths = docs_pages(app) | {app.openapi_url}

    def is_docs(route: BaseRoute) -> bool:
        if isinstance(route, Route) and route.path in paths:
            return True
        return isinstance(route, Mount) and route.name == DOCS_ASSETS

    app.router.routes = [route for route in app.router.routes if not is_docs(route)]
    app.openapi_url = None
