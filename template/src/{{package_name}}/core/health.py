"""Liveness and readiness endpoints.

Liveness says the process can serve HTTP; readiness says whether it can serve requests.
``GET`` and ``HEAD /health/live`` are answered by :class:`LivenessFirst` before any
middleware runs (``core/app.py`` puts it outermost). A probe queued behind the request
deadline, the rate limits and the concurrency caps could fail under load, and a failed
liveness probe restarts the instance that was busiest. The probe is not logged, counted
or traced either: probes every few seconds from every replica would crowd the access log
and the request metrics, and Prometheus's ``up`` already says whether an instance
answers. The route below stays for the OpenAPI document and the other methods' 405.

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
from starlette.types import ASGIApp, Receive, Scope, Send

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


LIVENESS_PATH = "/health/live"
_PROBE_METHODS = frozenset({"GET", "HEAD"})
_LIVENESS_BODY = Liveness().model_dump_json().encode()
_LIVENESS_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_LIVENESS_BODY)).encode()),
    # A cache between the prober and the service must not answer for a dead process.
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class LivenessFirst:
    """Answers ``GET`` and ``HEAD /health/live`` itself, 200 with ``{"status":"ok"}`` as
    the route would (no body for HEAD); passes every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != LIVENESS_PATH
            or scope["method"] not in _PROBE_METHODS
        ):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _LIVENESS_HEADERS})
        body = b"" if scope["method"] == "HEAD" else _LIVENESS_BODY
        await send({"type": "http.response.body", "body": body})


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


@router.get(
    "/live",
    description="Answered before every middleware (no request id, log line, metric or "
    "span): it says only that the process serves HTTP.",
)
async def live() -> Liveness:
    # Reached only by an app built without core/app.py's LivenessFirst.
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
