"""Liveness and readiness endpoints.

Liveness says the process can serve HTTP; readiness says whether it can serve requests.
Each slice that owns a connection registers a readiness check from its lifespan, so this
module never needs to know which backends the service was generated with. A check is
critical when the service cannot serve without it: only those fail readiness. The others
report ``degraded``: a load balancer that pulled every instance because a shared cache
hiccuped would turn a slowdown into an outage.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel

Check = Callable[[], Awaitable[None]]

# A dependency slower than this counts as down: a probe must answer before its own timeout.
CHECK_TIMEOUT_SECONDS = 2.0

logger = structlog.stdlib.get_logger(__name__)


CheckStatus = Literal["ok", "degraded", "error"]


class CheckResult(BaseModel):
    # A failing check is an error when critical, degraded otherwise.
    status: CheckStatus
    critical: bool
    duration_ms: float


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    # error: a critical check failed (503); degraded: only non-critical ones did (200).
    status: CheckStatus
    checks: dict[str, CheckResult]


class ReadinessChecks:
    def __init__(self) -> None:
        self._checks: dict[str, tuple[Check, bool]] = {}

    def register(self, name: str, check: Check, *, critical: bool = True) -> None:
        """Add a check; ``critical=False`` for a dependency the service serves without."""
        self._checks[name] = (check, critical)

    async def run(self) -> dict[str, CheckResult]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _run_one(self, name: str) -> CheckResult:
        check, critical = self._checks[name]
        started = time.perf_counter()
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # a failing dependency must not fail the probe itself
            status: CheckStatus = "error" if critical else "degraded"
            logger.warning("readiness check failed", check=name, status=status, error=repr(exc))
        else:
            status = "ok"
        duration_ms = (time.perf_counter() - started) * 1000
        return CheckResult(status=status, critical=critical, duration_ms=duration_ms)


def readiness_checks(app: FastAPI) -> ReadinessChecks:
    checks: ReadinessChecks = app.state.readiness
    return checks


router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> Liveness:
    return Liveness()


@router.get("/ready", responses={503: {"model": Readiness}})
async def ready(request: Request, response: Response) -> Readiness:
    checks = await readiness_checks(request.app).run()
    statuses = {result.status for result in checks.values()}
    status: CheckStatus = "ok"
    if "error" in statuses:
        status = "error"
        response.status_code = 503
    elif "degraded" in statuses:
        status = "degraded"
    return Readiness(status=status, checks=checks)
