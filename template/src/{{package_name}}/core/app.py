"""Assembles a FastAPI application from the core and the slices the service was built with.

Each slice describes what it contributes in a :class:`~.slices.Slice` (lifespan, routers,
middleware, log processors, instrumentation); ``build_app`` orders the slices by what they
declare, enters their lifespans in that order and leaves them in reverse, so nothing here
changes when a slice is added.
"""

import gc
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from .. import SERVICE_NAME
from .auth.dependencies import auth_lifespan
from .errors import document_problems, install_error_handlers
from .health import LIVENESS_PATH, LivenessFirst, ReadinessChecks
from .health import router as health_router
from .http_semantics import HeadAsGetMiddleware
from .logging import configure_logging
from .middleware import (
    BodySizeLimitMiddleware,
    RejectNulMiddleware,
    RequestContextMiddleware,
    RequestDeadlineMiddleware,
    TrustedHostMiddleware,
)
from .settings import Settings
from .slices import Slice, offered, ordered

logger = structlog.stdlib.get_logger(__name__)


# CPython starts a collection of its youngest generation once 700 more tracked objects
# have been made than freed. 32 requests in flight hold more than that, so under load
# collections ran every few requests and moved what those requests held into the older
# generations. 10,000 is above what the service holds in flight at a few dozen requests;
# cyclic garbage waits for at most that many objects (a few MB) before it is collected.
_YOUNG_GENERATION_THRESHOLD = 10_000


@contextmanager
def _garbage_collection_for_serving() -> Iterator[None]:
    """Keeps what exists once the service has started (modules, routes, settings, pools:
    about 150,000 objects) out of the garbage collector's full collections while it
    serves, and collects the youngest generation less often.

    Measured on an item read on PostgreSQL under 32 concurrent requests, before: full
    collections about twice a second, each walking every startup object for 75 ms, and
    the collector took a fifth of the process's CPU. Objects made after startup are
    collected as before; startup leftovers that were already garbage wait until shutdown.
    The collector's state is the process's: gc.unfreeze() does not nest, so a test that
    freezes the heap itself undoes this, which costs speed, not correctness.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], _YOUNG_GENERATION_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _answer_liveness_first(app: FastAPI) -> None:
    """Puts ``LivenessFirst`` around the whole middleware stack, the slices'
    instrumentation included (core/health.py says why), and has the OpenAPI document say
    that the probe answers only 200. Done after every slice has wrapped
    ``build_middleware_stack`` (as the tracing slice does) and ``openapi`` (the errors a
    layer can answer), so both are the outermost; Starlette builds the stack at the first
    request."""
    build_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return LivenessFirst(build_stack())

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    document = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = document()
        probe = schema["paths"].get(LIVENESS_PATH, {}).get("get")
        if first and probe is not None:
            # No layer sees the probe: none of their refusals can answer it.
            probe["responses"] = {"200": probe["responses"]["200"]}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_app(settings: Settings, *, version: str, slices: Sequence[Slice] = ()) -> FastAPI:
    """The application with ``slices``; refuses slices whose declarations conflict."""
    parts = ordered(slices)
    extensions = offered(parts)
    configure_logging(
        settings.logging,
        [processor for part in parts for processor in part.log_processors],
        [
            handler
            for part in parts
            if part.log_handlers is not None
            for handler in part.log_handlers(settings, version)
        ],
    )
    lifespans = [part.lifespan for part in parts if part.lifespan is not None]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for part in (auth_lifespan, *lifespans):
                await stack.enter_async_context(part(app))
            logger.info("service started", environment=settings.environment, version=version)
            with _garbage_collection_for_serving():
                yield
            logger.info("service stopping")

    # Swagger UI and ReDoc from files the service serves itself, not from a CDN: the docs
    # work offline and under a Content-Security-Policy of 'self'.
    app = FastAPIOffline(
        title=SERVICE_NAME,
        version=version,
        lifespan=lifespan,
        static_url="/docs/assets",
    )
    app.state.settings = settings
    app.state.readiness = ReadinessChecks()
    install_error_handlers(app)
    document_problems(app)
    app.add_middleware(HeadAsGetMiddleware)
    # Slices' middleware runs inside the access log and the body limit, first listed first.
    for entry in reversed([entry for part in parts for entry in part.middleware]):
        app.add_middleware(entry.cls, *entry.args, **entry.kwargs)
    # Inside the body limit, which bounds the JSON bodies it reads.
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(RequestDeadlineMiddleware, seconds=settings.server.request_timeout_seconds)
    app.add_middleware(
        TrustedHostMiddleware,
        allowed_hosts=settings.server.allowed_hosts,
        any_host_paths=tuple(settings.server.any_host_paths),
    )
    for entry in reversed([entry for part in parts for entry in part.edge_middleware]):
        app.add_middleware(entry.cls, *entry.args, **entry.kwargs)
    if settings.server.trusted_proxies:
        # The client's address and scheme from X-Forwarded-For and X-Forwarded-Proto, when
        # (and only when) the connection comes from a proxy the settings name. In the app,
        # not in uvicorn, so tests see what a served process does.
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[str(network) for network in settings.server.trusted_proxies],
        )
    # Added last, so outermost: it logs every request, the body limit's 413s included.
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health_router)
    # Routes in the order the slices are listed (main.py), not started: a request is
    # matched against the routes one by one, and the service's own (items) come first,
    # before the slices' admin and tooling routes.
    for part in slices:
        for router in part.routers:
            app.include_router(router)
    for part in parts:
        if part.instrument is not None:
            part.instrument(app, extensions)
    _answer_liveness_first(app)
    return app
