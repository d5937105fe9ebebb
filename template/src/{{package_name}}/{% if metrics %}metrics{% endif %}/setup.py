"""Wires the metrics slice into an application."""

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from ..core.slices import Extensions
from .instruments import HTTP_REQUEST_DURATION, HTTP_REQUESTS
from .middleware import STATUS_CLASSES, HttpMetricsMiddleware, method_label


def instrument_metrics(app: FastAPI, extensions: Extensions) -> None:
    """Measure every request, outside the access log (its 413s and 503s count too).

    With the tracing slice on, its ``exemplar`` links latency samples to traces.
    """
    app.add_middleware(HttpMetricsMiddleware, exemplar=extensions.exemplar)
    export_every_route_at_zero(app)


def export_every_route_at_zero(app: FastAPI) -> None:
    """Create each route's request series at 0 before its first request.

    Prometheus takes the first sample of a series as its starting point: a counter that
    appears at 1 with a route's first 5xx has increased by nothing, so that failure would
    never reach the error ratio. Routes added after this call start on first use.
    """
    # Included routers' routes, with their prefixes, as the router matches them.
    for route in iter_route_contexts(app.routes):
        if route.path is None or not route.methods:
            continue
        # HEAD is served wherever GET is (core answers it as GET without the body).
        methods = set(route.methods) | ({"HEAD"} if "GET" in route.methods else set())
        for method in {method_label(method) for method in methods}:
            HTTP_REQUEST_DURATION.labels(method, route.path)
            for status in STATUS_CLASSES:
                HTTP_REQUESTS.labels(method, route.path, status)
