"""Log records to OTLP, so the collector can ship them to Loki beside the traces."""

import logging

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.util.types import AnyValue


def _not_from_opentelemetry(record: logging.LogRecord) -> bool:
    # An exporter's own complaints would be queued for the very exporter that failed.
    return not record.name.startswith("opentelemetry")


class OtlpLogHandler(LoggingHandler):
    """OpenTelemetry's logging handler without structlog's private record fields.

    structlog passes its logger object on each record (``_logger``, ``_name``); exported as
    attributes they would only produce "invalid type" warnings. The body is the rendered
    JSON line, trace and span ids included, because the handler gets the service's formatter.
    """

    def __init__(self, logger_provider: LoggerProvider) -> None:
        super().__init__(logger_provider=logger_provider)
        self.addFilter(_not_from_opentelemetry)

    def _get_attributes(self, record: logging.LogRecord) -> tuple[dict[str, AnyValue], str | None]:
        attributes, event_name = super()._get_attributes(record)
        public = {key: value for key, value in attributes.items() if not key.startswith("_")}
        return public, event_name
