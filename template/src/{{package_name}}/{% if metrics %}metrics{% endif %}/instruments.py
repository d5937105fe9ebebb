"""The metrics this slice records. Each gauge says how worker processes combine."""

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from .exemplars import ExemplarStore

# One metric set whatever the worker count: prometheus-client's default process, platform
# and GC collectors exist only in single-process mode (app_process_* replaces them), and
# the *_created series would double every counter's series for a timestamp nobody graphs.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.unregister(_collector)
disable_created_metrics()  # type: ignore[no-untyped-call]

# The SLO thresholds (50 ms cached, 100 ms database-backed) are bucket bounds, so
# "faster than the objective" is an exact count rather than an interpolation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "app_http_requests",
    "HTTP requests answered, by route template and status class (5xx).",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "app_http_request_duration_seconds",
    "Time from receiving a request to sending the last byte of its answer.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
# Trace ids of recent requests per latency bucket (see exemplars.py).
HTTP_REQUEST_DURATION_EXEMPLARS = ExemplarStore(
    "app_http_request_duration_seconds", ["method", "route"], LATENCY_BUCKETS
)
HTTP_REQUESTS_IN_PROGRESS = Gauge(
    "app_http_requests_in_progress",
    "HTTP requests being handled.",
    ["method"],
    multiprocess_mode="livesum",
)
DB_POOL_IN_USE = Gauge(
    "app_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_LIMIT = Gauge(
    "app_db_pool_connections_limit",
    "Connections the pool may open: pool size plus overflow.",
    multiprocess_mode="livesum",
)
EVENT_LOOP_LAG = Gauge(
    "app_runtime_event_loop_lag_seconds",
    "Worst delay of the event loop's timers over the last window: time it was blocked.",
    multiprocess_mode="livemax",
)
PROCESS_CPU = Counter(
    "app_process_cpu_seconds",
    "CPU time (user and system) spent by the service's processes.",
)
PROCESS_MEMORY = Gauge(
    "app_process_resident_memory_bytes",
    "Resident memory of the service's processes.",
    multiprocess_mode="livesum",
)
BUILD_INFO = Gauge(
    "app_build_info",
    "Always 1; the labels say which version runs where.",
    ["version", "environment"],
    multiprocess_mode="livemax",
)
# Read replicas (core/replicas.py): each worker measures every replica, so the gauges
# combine by the worst worker's view.
DB_REPLICA_LAG = Gauge(
    "app_db_replica_lag_seconds",
    "How far each read replica's replay was behind the primary at its last check.",
    ["replica"],
    multiprocess_mode="livemax",
)
DB_REPLICA_AVAILABLE = Gauge(
    "app_db_replica_available",
    "1 while a read replica serves reads; 0 while it is skipped (down, behind, unchecked).",
    ["replica"],
    multiprocess_mode="livemin",
)
DB_READS = Counter(
    "app_db_reads",
    "Sessions of routes that only read, by the database that served them and why.",
    ["database", "reason"],
)
