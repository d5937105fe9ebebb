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


# At the edge, so refusals cost no body read and every answer gets the security headers;
# CORS inside it, so preflight answers carry them too. After Redis, whose URL the
# counters share.
protection_slice = Slice(
    name="protection",
    after=("redis",),
    lifespan=protection_lifespan,
    edge_middleware=(Middleware(ProtectionMiddleware), Middleware(CorsFromSettings)),
    middleware=(Middleware(JsonLimitsMiddleware),),
    instrument=instrument,
)
