"""What the tenant admin API takes and answers."""

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from .models import TENANT_ID_PATTERN
from .settings import Quotas

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
# A flag key as the flags slice spells them.
FeatureKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")]


def _storable(value: JsonValue) -> JsonValue:
    """Refuses text no database stores and no JSON encoder writes: a lone surrogate
    (``"\\ud800"`` in JSON) anywhere in a value."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("text with a lone surrogate (\\ud800-\\udfff) is not stored") from None
    elif isinstance(value, list):
        for item in value:
            _storable(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable(item)
    return value


# Where the OpenAPI document describes a feature's value (documentation.py): JSON with no
# NUL in any text or key, which the service refuses in every request body.
FEATURE_VALUE_REF = "#/components/schemas/FeatureValue"

Features = Annotated[
    dict[
        FeatureKey,
        Annotated[
            JsonValue, AfterValidator(_storable), WithJsonSchema({"$ref": FEATURE_VALUE_REF})
        ],
    ],
    Field(
        max_length=100,
        description="Values by flag key: each flag read for this tenant answers its value "
        "here, before any rule, rollout or experiment",
        # patternProperties alone would let the OpenAPI document accept keys the API
        # refuses.
        json_schema_extra={"additionalProperties": False},
    ),
]
TenantStatus = Literal["active", "suspended"]


class TenantConfiguration(BaseModel):
    """Per-tenant configuration, validated against the settings (a known plan)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    plan: PlanName
    # Configurations stored before features existed read as having none.
    features: Features = {}
    # This tenant's own quotas, each overriding its plan's.
    limits: Quotas = Quotas()


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: TenantId
    name: TenantName
    # Omitted: the first plan of APP_TENANCY__PLANS.
    plan: PlanName | None = None
    features: Features = {}
    limits: Quotas = Quotas()


class TenantPatch(BaseModel):
    """Fields to change; at least one."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    name: TenantName | None = None
    plan: PlanName | None = None
    # Replaces the tenant's features as a whole ({} removes them all).
    features: Features | None = None
    # Replaces the tenant's own quotas as a whole ({}: its plan's apply).
    limits: Quotas | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change: name, plan, features or limits")
        return self


class Suspension(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason = ""


class TenantRead(BaseModel):
    id: str
    name: str
    status: TenantStatus
    plan: str
    features: dict[str, JsonValue]
    limits: Quotas
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


class MeterUsage(BaseModel):
    day: date
    meter: str
    count: int


class TenantUsage(BaseModel):
    """What a tenant used over a period of UTC days, and the quotas that apply."""

    tenant_id: str
    since: date
    until: date
    # Totals over the period, by meter ("requests", and the service's own meters).
    totals: dict[str, int]
    # Each day's counts, oldest first; days with no usage are left out.
    days: list[MeterUsage]
    # Rows kept now, by tenant-scoped table.
    rows: dict[str, int]
    quotas: Quotas
