"""Liveness and readiness endpoints.

Liveness says the process can serve HTTP; readiness says its dependencies answer. Each
slice that owns a connection registers a readiness check from its lifespan, so this
module never needs to know which backends the service was generated with.
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


class CheckResult(BaseModel):
    status: Literal["ok", "error"]
    duration_ms: float


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "error"]
    checks: dict[str, CheckResult]


class ReadinessChecks:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def register(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> dict[str, CheckResult]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _run_one(self, name: str) -> CheckResult:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._checks[name](), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # a failing dependency must not fail the probe itself
            logger.warning("readiness check failed", check=name, error=repr(exc))
            status: Literal["ok", "error"] = "error"
        else:
            status = "ok"
        return CheckResult(status=status, duration_ms=(time.perf_counter() - started) * 1000)


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
    healthy = all(result.status == "ok" for result in checks.values())
    if not healthy:
        response.status_code = 503
    return Readiness(status="ok" if healthy else "error", checks=checks)
