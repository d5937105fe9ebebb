"""Rate limits per route in code: the :func:`rate_limit` dependency.

The settings' per-route policies (``APP_PROTECTION__RATE_LIMITS__ROUTES``, policies.py)
are counted by the edge middleware, before the body is read or any dependency runs. This
dependency runs with the route's other dependencies, after FastAPI has read the body: use
it where a limit belongs with the code (a login attempt), the settings elsewhere.
"""

from collections.abc import Awaitable, Callable

from fastapi import Request

from ..core.errors import ProblemError
from .filters import Refusal
from .limiter import Quota, quotas
from .middleware import Protection
from .policies import policy_name
from .settings import LimitKey


class RefusedError(ProblemError):
    """A refusal raised from a dependency: 429, or 503 when the counters are down and
    the limits fail closed."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail, headers=refusal.headers)
        self.status = refusal.status


def rate_limit(
    *limits: str, key: LimitKey = "user", name: str | None = None
) -> Callable[[Request], Awaitable[None]]:
    """A dependency counting each call of its route against ``limits``::

    @router.post("/login", dependencies=[Depends(rate_limit("5/minute", key="client"))])
    """
    cached: list[tuple[str, tuple[Quota, ...]]] = []

    async def check(request: Request) -> None:
        scope = request.scope
        if not cached:
            path = str(getattr(scope.get("route"), "path", scope["path"]))
            policy = name or policy_name(request.method, path)
            cached.append((policy, quotas(policy, list(limits))))
        policy, policy_quotas = cached[0]
        protection: Protection = request.app.state.protection
        limit_key, exempt = await protection.key_for(scope, key)
        if exempt:
            return
        refusal = await protection.limit(scope, policy, policy_quotas, limit_key)
        if refusal is not None:
            protection.observer.refused(refusal.reason)
            raise RefusedError(refusal)

    return check
