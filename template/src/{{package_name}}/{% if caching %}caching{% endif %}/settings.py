"""Settings of the caching slice (``APP_CACHING__<SETTING>``)."""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator


class CachingSettings(BaseModel):
    """How long entries live, how much memory they may take, how Redis faults are met."""

    # A misspelt APP_CACHING__ variable stops the service, naming it.
    model_config = ConfigDict(extra="forbid")

    # Off: every read goes to the database, as without the slice (HTTP headers stay).
    enabled: bool = True
    # Prefix of every key. Empty: "<service>:<version>:", so a release whose
    # representations changed never reads what an older one stored.
    namespace: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9_.:-]*$")
    # An entry is fresh this long after it was computed...
    ttl_seconds: float = Field(default=60.0, gt=0)
    # ...one request recomputes it within this long before it expires (the others keep
    # being answered from the entry)...
    early_refresh_seconds: float = Field(default=10.0, ge=0)
    # ...and it is served stale for this long after, but only while computing it fails.
    stale_if_error_seconds: float = Field(default=300.0, ge=0)
    # Bounds of the in-process tier; the least recently used entries go first.
    local_max_entries: int = Field(default=10_000, ge=1)
    local_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # The longest a request waits for Redis before it reads the database instead.
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=5)
    # After a Redis fault, reads bypass the cache this long before trying Redis again.
    outage_retry_seconds: float = Field(default=5.0, gt=0)
    # The longest one computation holds a key; others wait for it at most this long
    # before computing the value themselves.
    lock_seconds: float = Field(default=5.0, gt=0)
    # Compute the declared hot entries (the first page of items) at start-up.
    warm_on_startup: bool = True
    # A CDN's purge-by-tag endpoint (purge.py), told of every invalidation; and its token.
    cdn_purge_url: HttpUrl | None = None
    cdn_purge_token: SecretStr | None = None

    @model_validator(mode="after")
    def _refresh_inside_ttl(self) -> Self:
        if self.early_refresh_seconds >= self.ttl_seconds:
            raise ValueError("caching.early_refresh_seconds must be below caching.ttl_seconds")
        return self
