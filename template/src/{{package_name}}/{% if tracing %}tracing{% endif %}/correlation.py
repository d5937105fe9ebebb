"""Trace ids in log lines and metric exemplars, read from the span that is current."""

from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span, if any."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


def trace_exemplar() -> dict[str, str] | None:
    """Exemplar labels linking a metric sample to its trace; only sampled traces are kept."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return {"trace_id": trace.format_trace_id(context.trace_id)}
    return None
