"""The tenancy slice's settings: ``APP_TENANCY__*``."""

import re
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..core.schema_types import whole_number

# What names the tenant of a request. "token": the verified bearer token's tenant claim
# (APP_AUTH__TENANT_CLAIM). "subdomain": the first label of the Host under one of
# base_domains ("acme.api.example.com"). "header": a header a gateway in
# trusted_gateways sets, ignored from any other client.
TenantSource = Literal["token", "subdomain", "header"]

# As models.TENANT_ID_PATTERN; not imported from there: settings load before any model.
TENANT_ID_PATTERN = r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$|^[a-z]$"
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


class Quotas(BaseModel):
    """What a plan (or one tenant) may use; unset: no limit."""

    # Strict: the admin API takes these as JSON, where true is no count.
    model_config = ConfigDict(extra="forbid", strict=True)

    # Requests per UTC day; past it, 429 until the day ends.
    requests_per_day: Annotated[int, Field(ge=1), BeforeValidator(whole_number)] | None = None
    # Rows a tenant may keep, by tenant-scoped table ({"items": 1000}); a write that would
    # go past it gets 403.
    rows: Annotated[
        dict[
            Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")],
            Annotated[int, Field(ge=0), BeforeValidator(whole_number)],
        ],
        Field(json_schema_extra={"additionalProperties": False}),
    ] = {}


class TenancySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Every source listed is read; when two name different tenants the request is
    # refused (400), so a token for one tenant cannot be used on another's host.
    sources: list[TenantSource] = Field(default=["token"], min_length=1)
    header: str = "X-Tenant-Id"
    # Addresses or networks of the gateways whose tenant header is believed: the
    # connection's peer, before any X-Forwarded-For is applied.
    trusted_gateways: list[IPvAnyNetwork] = []
    # Domains whose subdomains name tenants: "api.example.com" reads "acme" from
    # "acme.api.example.com"; the domain itself names none.
    base_domains: list[str] = []
    # The tenant of requests that name none, if any: for a service whose existing clients
    # do not name one yet (switching tenancy on: the first tenant). Unset, such requests
    # act for no tenant, and routes that need one refuse them.
    default_tenant: Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)] | None = None
    # Paths that act for no tenant: probes, metrics, the API documents, and the tenant
    # admin API (a platform admin's token may name a tenant, suspended even).
    untenanted_paths: list[str] = [
        "/health/",
        "/metrics",
        "/docs",
        "/redoc",
        "/openapi.json",
        "/api/v1/tenants",
    ]
    # How long a process trusts what it read of a tenant (its status): a suspension made
    # in another process applies within this time. Changes made here apply at once.
    directory_ttl_seconds: float = Field(default=5.0, ge=0, le=300)
    # The plans a tenant can be on; a new tenant gets the first unless told otherwise.
    # Flags can target by plan: a flag read's "plan" is the tenant's unless the token
    # names one (its plan claim).
    plans: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,49}$")]] = Field(
        default=["standard"], min_length=1
    )

    # Quotas by plan; a plan not listed has none. A tenant's own limits (its
    # configuration) override its plan's, quota by quota.
    quotas: dict[str, Quotas] = {}
    # How often each process adds the usage it counted to the database: one write per
    # tenant, meter and day each time, not one per request. Quotas see other processes'
    # usage this late.
    usage_flush_seconds: float = Field(default=5.0, gt=0, le=300)
    # Tenants whose usage metrics carry their id; every other tenant is counted as
    # "other". Each listed tenant is a series of its own: list the ones you watch.
    metrics_tenants: list[Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]] = Field(
        default=[], max_length=50
    )

    # The tenant that items existing before tenancy was switched on are given, created
    # by the migration that switches it on (only if there are any).
    first_tenant: Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)] = "default"

    @model_validator(mode="after")
    def _sources_configured(self) -> Self:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError("tenancy.sources lists a source twice")
        if "header" in self.sources and not self.trusted_gateways:
            raise ValueError(
                "tenancy.sources has 'header' but tenancy.trusted_gateways is empty: name the "
                "gateways whose header is believed (APP_TENANCY__TRUSTED_GATEWAYS)"
            )
        if "subdomain" in self.sources and not self.base_domains:
            raise ValueError(
                "tenancy.sources has 'subdomain' but tenancy.base_domains is empty: name the "
                "domains whose subdomains are tenants "
                '(APP_TENANCY__BASE_DOMAINS=["api.example.com"])'
            )
        unknown = sorted(set(self.quotas) - set(self.plans))
        if unknown:
            raise ValueError(f"tenancy.quotas names plans that tenancy.plans lacks: {unknown}")
        if not _HEADER_NAME.fullmatch(self.header):
            raise ValueError(f"tenancy.header {self.header!r} is not a header name")
        return self

    @field_validator("base_domains")
    @classmethod
    def _lowercase_domains(cls, domains: list[str]) -> list[str]:
        return [domain.lower().strip(".") for domain in domains]
