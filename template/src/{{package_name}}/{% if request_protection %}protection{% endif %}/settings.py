"""The request protection slice's settings: ``APP_PROTECTION__*``."""

import re
from pathlib import Path
from typing import Literal, Self

from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

from ..core.health import LIVENESS_PATH

Strategy = Literal["sliding-window-counter", "moving-window", "fixed-window"]
# "user" is the token's subject (within its tenant) when the request carries a valid token,
# else the client's address; "tenant" is all of one tenant's requests together (a noisy
# neighbour's), else the address; "client" is always the address; "route" is everyone.
LimitKey = Literal["user", "tenant", "client", "route"]


def _parsed(limits: list[str]) -> list[str]:
    for text in limits:
        try:
            parse_many(text)
        except ValueError as exc:
            raise ValueError(f'"{text}" is not a rate limit such as "10/second"') from exc
    return limits


class RoutePolicy(BaseModel):
    """Limits for one route, on top of the default ones."""

    model_config = ConfigDict(extra="forbid")

    # Several limits apply together: a burst ("10/second") and a sustained rate
    # ("300/hour"); the request is refused when any of them is spent.
    limits: list[str] = Field(min_length=1)
    key: LimitKey = "user"

    _check_limits = field_validator("limits")(_parsed)


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Prefix of the counters' Redis keys, so that services (and environments) sharing a
    # Redis keep their counters apart; empty: "<service>:ratelimit".
    namespace: str = ""
    # The sliding window counter is exact enough (it weighs the previous window) in two
    # counters per key; the moving window is exact at one entry per request in the
    # window; the fixed window lets up to twice the limit through across a boundary.
    strategy: Strategy = "sliding-window-counter"
    # Every request, keyed by user (or client address, when anonymous). With Redis each
    # limit costs two round trips per request (docs/protection.md, "Cost").
    default: list[str] = ["600/minute"]
    # "METHOD /path/template" (as in the OpenAPI document) to the limits of that route.
    routes: dict[str, RoutePolicy] = {}
    # Requests under these path prefixes are not counted: probes and scrapes.
    exempt_paths: list[str] = ["/health/", "/metrics"]
    # Callers holding any of these roles are not counted. Unset: the role that runs the
    # service (APP_AUTH__SERVICE_ADMIN_ROLE).
    exempt_roles: list[str] | None = None
    # With Redis: the longest one command (or the wait for a connection) may take, and how
    # long to leave Redis alone after three failed checks in a row (requests meanwhile
    # are decided by fail_open, at no cost).
    redis_timeout_seconds: float = Field(default=0.25, gt=0)
    outage_retry_seconds: float = Field(default=5.0, ge=0)
    # When the counters cannot be reached: let requests through (counted and logged) or
    # refuse them with 503.
    fail_open: bool = True

    _check_default = field_validator("default")(_parsed)

    @field_validator("routes")
    @classmethod
    def _route_names(cls, routes: dict[str, RoutePolicy]) -> dict[str, RoutePolicy]:
        for name in routes:
            method, _, path = name.partition(" ")
            if method != method.upper() or not method.isalpha() or not path.startswith("/"):
                raise ValueError(f'route "{name}" must be "METHOD /path", e.g. "POST /items"')
        return routes


class FilterSettings(BaseModel):
    """Shapes of request the service refuses before any handler runs (400, 405, 414,
    415, 431)."""

    model_config = ConfigDict(extra="forbid")

    allowed_methods: list[str] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    # Media types a request body may have; "+json" types (merge-patch) count as JSON.
    content_types: list[str] = ["application/json"]
    max_url_bytes: int = Field(default=2048, ge=1)
    max_query_parameters: int = Field(default=50, ge=0)
    max_headers: int = Field(default=64, ge=1)
    max_header_bytes: int = Field(default=16 * 1024, ge=1)
    max_json_depth: int = Field(default=32, ge=1)
    max_json_array_items: int = Field(default=1000, ge=1)


class DenyRules(BaseModel):
    """Requests refused with 403. Also read from ``rules_file``, re-read when it changes."""

    model_config = ConfigDict(extra="forbid")

    clients: list[IPvAnyNetwork] = []
    # Regular expressions, searched in the User-Agent header and in the path.
    user_agents: list[str] = []
    paths: list[str] = []

    @field_validator("user_agents", "paths")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from exc
        return patterns


class AbuseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Requests one client address may have in progress; more get 429.
    max_concurrent_per_client: int = Field(default=32, ge=1)
    # A connection must deliver a request's headers within this time, and its body
    # within body_timeout_seconds, or it is closed (headers) or answered 408 (body).
    # Shorter than the request deadline (server.request_timeout_seconds), or that answers
    # first, with a 503.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=10.0, gt=0)


class HeaderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict-Transport-Security: None sends it on HTTPS requests (as the proxy reports
    # them, see server.trusted_proxies); True always; False never.
    hsts: bool | None = None
    hsts_max_age_seconds: int = Field(default=365 * 24 * 3600, ge=0)
    # For API answers; the docs pages get one that admits their own scripts.
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"


class CorsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Browser origins allowed to call the API ("https://app.example.com"); empty: none.
    allow_origins: list[str] = []
    allow_methods: list[str] = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    allow_headers: list[str] = ["Authorization", "Content-Type", "If-Match", "If-None-Match"]
    allow_credentials: bool = False
    max_age_seconds: int = Field(default=600, ge=0)


class PrivatePaths(BaseModel):
    """Paths only some callers may read (the metrics scrape): 404 for the others."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = ["/metrics"]
    # Client networks allowed; empty with no token: anyone.
    clients: list[IPvAnyNetwork] = []
    # A bearer token that also admits the caller (Prometheus' `authorization` setting);
    # empty: none.
    token: SecretStr | None = None

    @field_validator("paths")
    @classmethod
    def _not_the_liveness_probe(cls, paths: list[str]) -> list[str]:
        # The probe is answered before this slice's middleware (core/health.py): a prefix
        # of it here would look private and not be.
        covering = [path for path in paths if LIVENESS_PATH.startswith(path)]
        if covering:
            raise ValueError(
                f"{covering[0]!r} covers {LIVENESS_PATH}, which is answered before request "
                "protection and cannot be private"
            )
        return paths

    @field_validator("token")
    @classmethod
    def _empty_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        return token if token is not None and token.get_secret_value() else None


class ProtectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_limits: RateLimitSettings = RateLimitSettings()
    filters: FilterSettings = FilterSettings()
    deny: DenyRules = DenyRules()
    # A JSON file with the deny rules' fields, merged with the ones above; edits apply
    # within a second, without a restart.
    rules_file: Path | None = None
    # Detect-only scoring of injection patterns: counted and logged, never refused,
    # unless block_anomaly_score is set (docs/protection.md says why it is off).
    anomaly_scoring: bool = True
    block_anomaly_score: int | None = Field(default=None, ge=1)
    abuse: AbuseSettings = AbuseSettings()
    headers: HeaderSettings = HeaderSettings()
    cors: CorsSettings = CorsSettings()
    # /docs, /redoc and /openapi.json: None serves them outside production only.
    api_docs: bool | None = None
    private: PrivatePaths = PrivatePaths()

    @model_validator(mode="after")
    def _credentials_need_origins(self) -> Self:
        if self.cors.allow_credentials and "*" in self.cors.allow_origins:
            raise ValueError("protection.cors.allow_credentials needs the origins named, not '*'")
        return self

    def check_production(self) -> None:
        if "*" in self.cors.allow_origins:
            raise ValueError(
                "protection.cors.allow_origins (APP_PROTECTION__CORS__ALLOW_ORIGINS) allows "
                "any origin in production; name the origins"
            )
