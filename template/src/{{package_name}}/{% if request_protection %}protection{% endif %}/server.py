"""uvicorn's HTTP protocol with a deadline for a request's headers (slowloris).

uvicorn closes idle keep-alive connections, but a connection that sends a request's
headers a byte at a time is kept for as long as the client likes, so a few hundred such
clients hold every connection a worker can have. This protocol closes a connection whose
request headers have not all arrived ``header_timeout_seconds`` after it opened or after
its previous response, and counts it. Bodies have their own limit, in the middleware (a
408 answer).
"""

import asyncio
import contextvars
from collections.abc import Callable

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..core.settings import get_settings

logger = structlog.stdlib.get_logger(__name__)

# Set by the slice's lifespan: counts a closed connection in the metrics.
on_slow_connection_closed: Callable[[], None] = lambda: None  # noqa: E731


# Module level: uvicorn's worker processes receive the class pickled, by name. httptools'
# protocol is the one uvicorn chooses by default (uvicorn[standard] installs httptools).
class GuardedHttpToolsProtocol(HttpToolsProtocol):
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # The connection becomes a WebSocket's (GraphQL subscriptions): no request headers
        # will follow, and it may rightly stay quiet for hours.
        self._cancel_header_deadline()
        super().handle_websocket_upgrade()

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        seconds = get_settings().protection.abuse.header_timeout_seconds
        # In a context of its own: not the last request's (its ids would be logged).
        self._header_deadline = self.loop.call_later(
            seconds, self._header_deadline_passed, context=contextvars.Context()
        )

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        # No request in progress: the next one's headers have not all arrived.
        waiting_for_headers = self.cycle is None or self.cycle.response_complete
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed, or upgraded to another protocol (a WebSocket)
        if self.transport.get_write_buffer_size():
            # Still sending the last response to a slow reader: not a slow request.
            self._arm_header_deadline()
            return
        if waiting_for_headers:
            logger.warning(
                "connection closed: request headers too slow",
                client=self.client[0] if self.client else None,
            )
            on_slow_connection_closed()
            self.transport.close()
