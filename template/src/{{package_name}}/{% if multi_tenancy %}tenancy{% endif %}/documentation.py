"""What the slice adds to the OpenAPI document: the refusals of tenant resolution, and
the plans a tenant can be on (settings, so no model can name them)."""

from typing import Any

from fastapi import FastAPI

from ..core.errors import PROBLEM_CONTENT_TYPE
from .settings import TenancySettings

_PROBLEM = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
# What resolution answers any operation it screens.
_REFUSALS = {
    "400": "The request names more than one tenant",
    "403": "The tenant does not exist or is suspended",
    "503": "Service Unavailable",
}


def document_tenancy(app: FastAPI, settings: TenancySettings) -> None:
    generate = app.openapi
    untenanted = tuple(settings.untenanted_paths)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(untenanted):
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in _REFUSALS.items():
                    responses.setdefault(status, {"description": description, "content": _PROBLEM})
        components = schema.get("components", {}).get("schemas", {})
        for name in ("TenantCreate", "TenantPatch"):
            plan = components.get(name, {}).get("properties", {}).get("plan")
            if plan is not None:
                _only_these(plan, settings.plans)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _only_these(schema: dict[str, Any], plans: list[str]) -> None:
    """The plan's string schema (alone or beside null) becomes the list of plans."""
    options = schema.get("anyOf", [schema])
    for option in options:
        if option.get("type") == "string":
            option.clear()
            option.update({"type": "string", "enum": list(plans)})
