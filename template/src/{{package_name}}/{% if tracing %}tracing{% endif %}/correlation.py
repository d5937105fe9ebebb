"""Traces, logs and metrics pointing at each other, read from the span that is current."""

import sys

from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger


def _sampled_span() -> trace.Span | None:
    span = trace.get_current_span()
    context = span.get_span_context()
    # Ids of unsampled traces would lead to traces nobody kept; request_id still ties
    # such a request's lines together.
    return span if context.is_valid and context.trace_flags.sampled else None


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` and ``span_id`` of the current sampled span.

    An error logged with its exception (``logger.exception``) is also recorded on the
    span: the service answers unhandled errors itself, so OpenTelemetry's own middleware
    never sees the exception.
    """
    span = _sampled_span()
    if span is None:
        return event_dict
    context = span.get_span_context()
    event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
    event_dict["span_id"] = trace.format_span_id(context.span_id)
    if event_dict.get("exc_info") is True:
        error = sys.exc_info()[1]
        if isinstance(error, Exception):
            span.record_exception(error)
    return event_dict


def trace_exemplar() -> dict[str, str] | None:
    """Exemplar labels linking a metric sample to its (sampled) trace."""
    span = _sampled_span()
    if span is None:
        return None
    return {"trace_id": trace.format_trace_id(span.get_span_context().trace_id)}
