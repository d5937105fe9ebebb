"""Structured logging: every record, ours or a library's, becomes one JSON line.

structlog renders the lines; the standard library's loggers (uvicorn, SQLAlchemy, alembic)
are routed through the same processors so the output has one shape. Request-scoped values
(request id, later trace ids) are bound with ``structlog.contextvars`` and appear on every
line written while the request is handled.
"""

import logging
import sys
from collections.abc import Sequence

import structlog
from structlog.typing import Processor

from .settings import LoggingSettings

# The processors of every structlog logger, one list for the life of the process and
# changed in place: a logger keeps the list it was first used with (the service caches
# loggers on first use), so an app built later in the same process (tests build several)
# still reaches the loggers used before it, the access log's among them.
_PROCESSORS: list[Processor] = []


def configure_logging(
    settings: LoggingSettings,
    processors: Sequence[Processor] = (),
    handlers: Sequence[logging.Handler] = (),
) -> None:
    """Route all logging through structlog's processors to stdout (and ``handlers``).

    ``processors`` add fields to every record (the tracing slice adds trace ids);
    ``handlers`` receive the same rendered lines as stdout (the tracing slice ships them).
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        *processors,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if settings.json_format
        else structlog.dev.ConsoleRenderer()
    )
    _PROCESSORS[:] = [
        # Drop records below the level first, before any processor spends time on them.
        structlog.stdlib.filter_by_level,
        *shared,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    stdout = logging.StreamHandler(sys.stdout)
    for handler in (stdout, *handlers):
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [stdout, *handlers]
    root.setLevel(settings.level)
    # The service writes its own access line (see middleware); uvicorn's would duplicate it.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False
