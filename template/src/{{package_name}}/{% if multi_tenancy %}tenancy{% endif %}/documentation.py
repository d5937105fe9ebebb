"""What the slice adds to the OpenAPI document: the refusals of tenant resolution, and
the plans a tenant can be on (settings, so no model can name them)."""

from typing import Any

from fastapi import FastAPI

from ..core.errors import PROBLEM_CONTENT_TYPE
from .models import tenant_scoped_tables
from .schemas import FEATURE_VALUE_REF
from .settings import TenancySettings

_PROBLEM = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
# What resolution answers any operation it screens.
_REFUSALS = {
    "400": "The request names more than one tenant",
    "403": "The tenant does not exist or is suspended",
    "429": "The tenant has used its requests of the day (Retry-After: until the next)",
    "503": "Service Unavailable",
}


_NO_NUL = {"type": "string", "pattern": "^[^\\x00]*$"}
# A feature's value: any JSON, recursively, with no NUL in any text or key (the service
# refuses NUL in every request body; schemas.FEATURE_VALUE_REF points here).
_FEATURE_VALUE = {
    "description": "A flag value: any JSON, without NUL in any text or key",
    "anyOf": [
        _NO_NUL,
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": FEATURE_VALUE_REF}},
        {
            "type": "object",
            "propertyNames": _NO_NUL,
            "additionalProperties": {"$ref": FEATURE_VALUE_REF},
        },
    ],
}


def document_tenancy(app: FastAPI, settings: TenancySettings) -> None:
    generate = app.openapi
    untenanted = tuple(settings.untenanted_paths)
    refusals = dict(_REFUSALS)
    if "token" in settings.sources:
        # Routes that need a tenant (TenantDep) want a token naming one, and one that
        # verifies.
        refusals["401"] = "A bearer token naming a tenant is required, or it did not verify"

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(untenanted):
                continue
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, description in refusals.items():
                    responses.setdefault(status, {"description": description, "content": _PROBLEM})
        components = schema.get("components", {}).get("schemas", {})
        for name, component in components.items():
            rows = component.get("properties", {}).get("rows")
            if not name.startswith("Quotas") or rows is None:
                continue
            # Row quotas name tenant-scoped tables: the ones this service has.
            integer = {"type": "integer", "minimum": 0}
            rows.pop("patternProperties", None)
            rows["properties"] = dict.fromkeys(tenant_scoped_tables(), integer)
            rows["additionalProperties"] = False
        components["FeatureValue"] = _FEATURE_VALUE
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
