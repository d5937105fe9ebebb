"""Requests in progress, by method: the one HTTP metric the instrumentator can't keep.

prometheus-fastapi-instrumentator (setup.py) counts and times the requests. Its own
in-progress gauge is labelled by the raw request method or not at all, and the method is
the client's to choose: every token a client sends as a method would become a series of its
own. This gauge keeps the ``method`` label the dashboards group by, with unknown methods
folded into OTHER.
"""

from prometheus_fastapi_instrumentator.middleware import PrometheusInstrumentatorMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .instruments import HTTP_REQUESTS_IN_PROGRESS

# Any other method becomes OTHER: clients choose the method, so it must not pick labels.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


class InProgressMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        in_progress = HTTP_REQUESTS_IN_PROGRESS.labels(method_label(scope["method"]))
        in_progress.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            in_progress.dec()


class RequestMetricsMiddleware(PrometheusInstrumentatorMiddleware):
    """The instrumentator's middleware without its route lookup.

    Before each request it matches the path against every route, to find the handler's
    template for its exclusion patterns and its ``handler`` label. This service has no
    exclusion patterns and labels by the route the router itself matched
    (``route_template``, in setup.py), so that lookup was wasted: about 45 µs of an
    in-process ``/health/live`` of 300, more with more routes.
    """

    def _get_handler(self, request: Request) -> tuple[str, bool]:
        # Templated, so the instrumentator groups nothing under "none".
        return "", True
