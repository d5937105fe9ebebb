"""``GET /metrics`` in Prometheus text or, when the scraper asks for it, OpenMetrics.

Exemplars appear only in OpenMetrics, which Prometheus asks for (version 3 always, 2.x
with exemplar storage enabled).
"""

from functools import cache

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .exemplars import ExemplarCollector
from .instruments import HTTP_REQUEST_DURATION_EXEMPLARS
from .multiprocess import multiprocess_dir

router = APIRouter()


@cache
def exposition_registry() -> CollectorRegistry:
    source: Collector = REGISTRY
    if multiprocess_dir() is not None:
        source = MultiProcessCollector(None)  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExemplarCollector(source, [HTTP_REQUEST_DURATION_EXEMPLARS]))
    return registry


# Plain `def`: collecting reads the workers' files, so it runs in the thread pool.
@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(exposition_registry()), media_type=content_type)
