"""The tracing slice's settings: ``APP_TRACING__*``."""

from pydantic import BaseModel, Field


class TracingSettings(BaseModel):
    """Where spans go is OpenTelemetry's standard ``OTEL_*`` variables' business."""

    # Off: no tracer provider, no instrumentation, no exporter threads.
    enabled: bool = True
    # Share of the traces starting here that are kept; callers' decisions are followed.
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
