"""Counts, times and gauges every HTTP request by method and route template."""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.middleware import route_template
from ..core.slices import ExemplarSource
from .instruments import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUEST_DURATION_EXEMPLARS,
    HTTP_REQUESTS,
    HTTP_REQUESTS_IN_PROGRESS,
)

# Any other method becomes OTHER: clients choose the method, so it must not pick labels.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})

# Statuses are counted by class (2xx, 3xx, 4xx, 5xx): few enough that every route's
# series can exist from the start (see setup.py); the exact code is in the access log.
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, exemplar: ExemplarSource | None = None) -> None:
        self.app = app
        self.exemplar = exemplar

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = method_label(scope["method"])
        in_progress = HTTP_REQUESTS_IN_PROGRESS.labels(method)
        in_progress.inc()
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            duration = time.perf_counter() - started
            # Known only now: the router matched the route while handling the request.
            route = route_template(scope)
            HTTP_REQUESTS.labels(method, route, status_class(status)).inc()
            HTTP_REQUEST_DURATION.labels(method, route).observe(duration)
            exemplar = self.exemplar() if self.exemplar is not None else None
            if exemplar is not None:
                HTTP_REQUEST_DURATION_EXEMPLARS.record((method, route), duration, exemplar)
            in_progress.dec()
