"""Distributed tracing with OpenTelemetry.

Spans for every request (FastAPI), query (SQLAlchemy) and outbound call (httpx, Redis),
exported over OTLP/HTTP as the standard ``OTEL_*`` variables say; trace and span ids on
every log line written inside a span.
"""
