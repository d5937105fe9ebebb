"""A client span per SQL statement, made only inside a recorded trace.

OpenTelemetry's SQLAlchemy instrumentation builds every statement's attributes and asks
the sampler before it knows whether anything records, and adds a span per connection
checkout: about 170 µs per item read that records nothing. These hooks look at the
current span first and return at once unless it records; inside a recorded trace they
make the span the instrumentation would, with the same names and attributes, so
dashboards and trace queries read them alike.
"""

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext, ExecutionContext

# Where the statement's span waits for the statement's end, on its execution context.
SPAN_ATTRIBUTE = "_service_statement_span"


def url_attributes(url: URL, system: str) -> dict[str, str | int]:
    """The instrumentation's connection attributes (its default, pre-1.0 conventions)."""
    attributes: dict[str, str | int] = {"db.system": system}
    if url.database:
        attributes["db.name"] = url.database
    if url.host:
        attributes["net.peer.name"] = url.host
    if url.port:
        attributes["net.peer.port"] = url.port
    if url.username:
        attributes["db.user"] = url.username
    return attributes


def span_name(statement: str, database: str | None) -> str:
    """The statement's first word and the database, as the instrumentation names it."""
    words = statement.split(maxsplit=1)
    parts = [*words[:1], *([database] if database else [])]
    return " ".join(parts) or "SQL"


class StatementSpans:
    """The engine event hooks; registered on the ``Engine`` class, so every engine the
    service makes (primary, replicas, tenants' databases) is covered, whenever made."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def before_cursor_execute(
        self,
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        if context is None or not trace.get_current_span().is_recording():
            return
        url = connection.engine.url
        span = self.tracer.start_span(
            span_name(statement, url.database),
            kind=SpanKind.CLIENT,
            attributes={**url_attributes(url, connection.dialect.name), "db.statement": statement},
        )
        setattr(context, SPAN_ATTRIBUTE, span)

    @staticmethod
    def after_cursor_execute(
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext | None,
        executemany: bool,
    ) -> None:
        span = getattr(context, SPAN_ATTRIBUTE, None)
        if span is not None:
            span.end()

    @staticmethod
    def handle_error(exception_context: ExceptionContext) -> None:
        span = getattr(exception_context.execution_context, SPAN_ATTRIBUTE, None)
        if span is not None:
            error = exception_context.original_exception
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()


class _Process:
    hooks: StatementSpans | None = None


def trace_statements(tracer_provider: trace.TracerProvider) -> None:
    """Spans for the statements of every engine in the process, from now on; once."""
    if _Process.hooks is not None:
        return
    hooks = StatementSpans(tracer_provider.get_tracer(__name__))
    event.listen(Engine, "before_cursor_execute", hooks.before_cursor_execute)
    event.listen(Engine, "after_cursor_execute", hooks.after_cursor_execute)
    event.listen(Engine, "handle_error", hooks.handle_error)
    _Process.hooks = hooks
