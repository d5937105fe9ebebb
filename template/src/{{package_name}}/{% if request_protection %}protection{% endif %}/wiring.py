"""The request protection slice's part in the application (see core/slices.py)."""

from fastapi import FastAPI
from starlette.middleware import Middleware

from ..core.slices import Extensions, Slice
from .cors import CorsFromSettings
from .documentation import docs_enabled, document_protection, remove_docs
from .lifespan import protection_lifespan
from .middleware import JsonLimitsMiddleware, ProtectionMiddleware


def instrument(app: FastAPI, extensions: Extensions) -> None:
    settings = app.state.settings.protection
    if docs_enabled(app, settings):
        document_protection(app, settings)
    else:
        remove_docs(app)


# At the edge, so refusals cost no body read and every answer gets the security headers.
# CORS outside it, so that a browser can read refusals (a 429) too, and preflights are
# answered before they are counted. After Redis, whose URL the counters share.
protection_slice = Slice(
    name="protection",
    after=("redis",),
    lifespan=protection_lifespan,
    edge_middleware=(Middleware(CorsFromSettings), Middleware(ProtectionMiddleware)),
    middleware=(Middleware(JsonLimitsMiddleware),),
    instrument=instrument,
)
