"""What a slice adds to the application, and in which order its parts run.

A slice (``items``, ``flags``, ``metrics``, ...) describes everything it contributes in one
:class:`Slice` object, kept in its package's ``wiring`` module. ``main.py`` lists the enabled
ones; ``build_app`` orders them by what they declare and assembles the application. Core
never names a slice, and a slice names another only to say it must start after it.
"""

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields, replace

from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware
from structlog.typing import Processor

from .settings import Settings

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

# Labels that link a metric sample to the trace it was measured in, or None outside one.
ExemplarSource = Callable[[], dict[str, str] | None]


@dataclass(frozen=True, kw_only=True)
class Extensions:
    """Typed hooks one slice offers the others, each offered by at most one slice.

    Slices meet here instead of importing each other: the tracing slice offers
    ``exemplar``, the metrics slice uses it when present. A new cross-slice hook is a new
    optional field.
    """

    exemplar: ExemplarSource | None = None


@dataclass(frozen=True, kw_only=True)
class Slice:
    """A slice's contributions to the application; every part is optional."""

    name: str
    # Slices that must be enabled too; their lifespans are entered before this one's.
    requires: tuple[str, ...] = ()
    # Slices whose lifespans are entered before this one's when they are enabled.
    after: tuple[str, ...] = ()
    # Entered before every other slice and left after all of them (tracing: it exports
    # what the others log and trace while they stop).
    first_in_last_out: bool = False
    # Opens what the slice owns at start-up, stores it on ``app.state``, registers its
    # readiness checks, and closes it at shutdown.
    lifespan: Lifespan | None = None
    routers: tuple[APIRouter, ...] = ()
    # Runs inside the access log, the request deadline and the body limit, and sees each
    # request as its handler will; first listed, first to see the request.
    middleware: tuple[Middleware, ...] = ()
    # Runs right inside the access log, before the host check, the deadline and the body
    # limit, and sees every response last: for refusing requests before any of their body
    # is read, and for headers every answer carries (request protection).
    edge_middleware: tuple[Middleware, ...] = ()
    # structlog processors adding fields to every log line (trace ids).
    log_processors: tuple[Processor, ...] = ()
    # Handlers receiving every rendered log line besides stdout (an OTLP exporter).
    log_handlers: Callable[[Settings, str], Sequence[logging.Handler]] | None = None
    # Called with the assembled application, for what wraps the whole of it (the request
    # metrics and spans, outside the access log) or needs every route in place.
    instrument: Callable[[FastAPI, Extensions], None] | None = None
    # What this slice offers the others.
    offers: Extensions = field(default_factory=Extensions)


class SliceWiringError(ValueError):
    """The enabled slices cannot be assembled as they declare."""


def ordered(slices: Sequence[Slice]) -> list[Slice]:
    """The slices in the order their lifespans are entered (and instrumented).

    Listed order is kept wherever the declarations allow, so the result is stable;
    ``first_in_last_out`` slices come first, then each slice after those it ``requires``
    or comes ``after``.
    """
    names = [part.name for part in slices]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SliceWiringError(f"slices listed more than once: {', '.join(duplicates)}")
    enabled = set(names)
    for part in slices:
        missing = [name for name in part.requires if name not in enabled]
        if missing:
            raise SliceWiringError(
                f"slice {part.name!r} requires {', '.join(map(repr, missing))}, "
                "which is not enabled"
            )
    outer = [part for part in slices if part.first_in_last_out]
    for part in outer:
        before = [name for name in (*part.requires, *part.after) if name in enabled]
        if before:
            raise SliceWiringError(
                f"slice {part.name!r} is first in, last out but must start after "
                f"{', '.join(map(repr, before))}"
            )
    result = list(outer)
    placed = {part.name for part in result}
    pending = [part for part in slices if part.name not in placed]
    while pending:
        ready = next(
            (
                part
                for part in pending
                if all(name in placed for name in (*part.requires, *part.after) if name in enabled)
            ),
            None,
        )
        if ready is None:
            cycle = ", ".join(repr(part.name) for part in pending)
            raise SliceWiringError(f"slices wait for each other to start: {cycle}")
        result.append(ready)
        placed.add(ready.name)
        pending.remove(ready)
    return result


def offered(slices: Sequence[Slice]) -> Extensions:
    """Every extension the slices offer, refusing two offers of the same one."""
    merged = Extensions()
    offered_by: dict[str, str] = {}
    for part in slices:
        for hook in fields(Extensions):
            value = getattr(part.offers, hook.name)
            if value is None:
                continue
            if hook.name in offered_by:
                raise SliceWiringError(
                    f"slices {offered_by[hook.name]!r} and {part.name!r} both offer {hook.name!r}"
                )
            offered_by[hook.name] = part.name
            merged = replace(merged, **{hook.name: value})
    return merged
