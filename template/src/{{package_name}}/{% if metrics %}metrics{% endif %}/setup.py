"""Wires the metrics slice into an application."""

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from prometheus_fastapi_instrumentator.metrics import Info

from ..core.middleware import route_template
from ..core.slices import ExemplarSource, Extensions
from .instruments import HTTP_REQUEST_DURATION, HTTP_REQUEST_DURATION_EXEMPLARS, HTTP_REQUESTS
from .middleware import InProgressMiddleware, RequestMetricsMiddleware, method_label
from .replicas import ReplicaMetrics

# Statuses are counted by class (2xx, 3xx, 4xx, 5xx), the instrumentator's grouping: few
# enough that every route's series can exist from the start; the exact code is in the
# access log.
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


def instrument_metrics(app: FastAPI, extensions: Extensions) -> None:
    """Measure every request, outside the access log (its 413s and 503s count too).

    With the tracing slice on, its ``exemplar`` links latency samples to traces.
    """
    app.add_middleware(
        RequestMetricsMiddleware,
        should_group_status_codes=True,
        instrumentations=[request_recorder(extensions.exemplar)],
    )
    app.add_middleware(InProgressMiddleware)
    export_every_route_at_zero(app)
    if app.state.settings.database.replica_urls:
        # Heard by core/replicas.py, whose lifespan starts after this runs.
        app.state.replica_observer = ReplicaMetrics()


def request_recorder(exemplar: ExemplarSource | None) -> Callable[[Info], None]:
    """The instrumentator's instrumentation: today's names and labels, with exemplars.

    The route comes from the route the router matched (``route_template``), not from the
    instrumentator's ``modified_handler``: for a path that differs from a route only by a
    trailing slash, the instrumentator reports the raw path, which would let clients mint a
    series per item id. The method is folded like the in-progress gauge's.
    """

    def record(info: Info) -> None:
        method = method_label(info.method)
        route = route_template(info.request.scope)
        duration = info.modified_duration
        HTTP_REQUESTS.labels(method, route, info.modified_status).inc()
        HTTP_REQUEST_DURATION.labels(method, route).observe(duration)
        # Read here, while the request's server span is still the current one.
        labels = exemplar() if exemplar is not None else None
        if labels is not None:
            HTTP_REQUEST_DURATION_EXEMPLARS.record((method, route), duration, labels)

    return record


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
