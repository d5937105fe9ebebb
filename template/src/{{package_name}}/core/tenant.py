"""The tenant the running code acts for, when the service has tenants.

The tenancy slice sets it for each request it resolves a tenant for, and for code that
acts for a tenant off the request path (a job, a command). What keys on the tenant
without depending on that slice reads it here: flag targeting, log lines. Without the
slice it is always None.
"""

from contextvars import ContextVar

current_tenant: ContextVar[str | None] = ContextVar("current_tenant", default=None)
