"""What the tenant admin API takes and answers."""

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .models import TENANT_ID_PATTERN

TenantId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=TENANT_ID_PATTERN),
    Field(description="Lowercase letters, digits and inner hyphens (a DNS label)"),
]
TenantName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=200, pattern=r"^[^ \t\n\r\f\v\x00]([^\x00]*[^ \t\n\r\f\v\x00])?$"
    ),
]
PlanName = Annotated[
    str, StringConstraints(min_length=1, max_length=50, pattern=r"^[a-z][a-z0-9_-]*$")
]
Reason = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")]
TenantStatus = Literal["active", "suspended"]


class TenantConfiguration(BaseModel):
    """Per-tenant configuration, validated against the settings (a known plan)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    plan: PlanName


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: TenantId
    name: TenantName
    # Omitted: the first plan of APP_TENANCY__PLANS.
    plan: PlanName | None = None


class TenantPatch(BaseModel):
    """Fields to change; at least one."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    name: TenantName | None = None
    plan: PlanName | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change: name or plan")
        return self


class Suspension(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason = ""


class TenantRead(BaseModel):
    id: str
    name: str
    status: TenantStatus
    plan: str
    version: int
    created_at: datetime
    updated_at: datetime


class TenantPage(BaseModel):
    items: list[TenantRead]
    total: int
    limit: int
    offset: int


class TenantChangeRead(BaseModel):
    id: int
    tenant_id: str
    actor: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changed_at: datetime
