"""The tracing slice's part in the application (see core/slices.py)."""

from starlette.middleware import Middleware

from ..core.slices import Extensions, Slice
from .correlation import add_trace_context, trace_exemplar
from .setup import flush_on_shutdown, instrument, log_handlers
from .untraced import UntracedPathsMiddleware

tracing_slice = Slice(
    name="tracing",
    # Started first and stopped last, so the spans and log lines of every other slice's
    # shutdown are still exported.
    first_in_last_out=True,
    lifespan=flush_on_shutdown,
    middleware=(Middleware(UntracedPathsMiddleware),),
    log_processors=(add_trace_context,),
    log_handlers=log_handlers,
    instrument=instrument,
    offers=Extensions(exemplar=trace_exemplar),
)
