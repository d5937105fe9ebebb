"""CORS from the settings: closed (no middleware at all) unless origins are named."""

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .settings import CorsSettings

# Response headers a browser script may read: quotas, retries, versions, new resources.
EXPOSED_HEADERS = [
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "ETag",
    "Location",
    "X-Request-ID",
]


class CorsFromSettings:
    """Starlette's CORS middleware, built from ``APP_PROTECTION__CORS__*`` on the first
    request (middleware is declared before the settings are known)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._handler: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._handler is None:
            cors: CorsSettings = scope["app"].state.settings.protection.cors
            self._handler = (
                CORSMiddleware(
                    self.app,
                    allow_origins=cors.allow_origins,
                    allow_methods=cors.allow_methods,
                    allow_headers=cors.allow_headers,
                    allow_credentials=cors.allow_credentials,
                    max_age=cors.max_age_seconds,
                    expose_headers=EXPOSED_HEADERS,
                )
                if cors.allow_origins
                else self.app
            )
        await self._handler(scope, receive, send)
