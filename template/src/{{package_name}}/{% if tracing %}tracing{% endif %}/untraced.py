"""Probes and scrapes start no spans, whichever tracer a library they call was given.

Their requests get no server span (the FastAPI instrumentation's excluded URLs), and the
service's sampler drops client spans that start a trace. Under opentelemetry-instrument,
though, libraries it instrumented before the service started (httpx, Redis) keep the
SDK's sampler, and a readiness probe's Redis ``PING`` would be a trace of its own every few
seconds. Suppressing instrumentation while these paths are handled holds in both starts.
"""

from opentelemetry.instrumentation.utils import suppress_instrumentation
from starlette.types import ASGIApp, Receive, Scope, Send

# Matched as prefixes of the request path.
UNTRACED_PATHS = ("/health/", "/metrics")


class UntracedPathsMiddleware:
    """Nothing called while a probe or a scrape is handled makes a span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(UNTRACED_PATHS):
            await self.app(scope, receive, send)
            return
        with suppress_instrumentation():
            await self.app(scope, receive, send)
