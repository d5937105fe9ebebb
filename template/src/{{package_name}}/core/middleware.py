"""ASGI middleware: request id, access log, last-resort 500, request body limit, hosts.

Plain ASGI rather than ``BaseHTTPMiddleware``, so streaming responses are not buffered and
the request's context variables stay visible to the handlers.
"""

import logging
import re
import time
import uuid

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import problem_response

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and printable, so it is safe to log and echo.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = structlog.stdlib.get_logger("access")
logger = structlog.stdlib.get_logger(__name__)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/items/{item_id}``), never the raw path."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # FastAPI puts only its API routes into scope["route"]; find the others (/docs,
    # /openapi.json) by the endpoint the router matched.
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for route in getattr(scope.get("app"), "routes", ()):
            if getattr(route, "endpoint", None) is endpoint:
                return str(route.path)
    return "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            logger.exception("unhandled error")
            if response_started:
                raise
            # Never leak a stack trace: the client gets a problem document, the log the details.
            response = problem_response(
                500,
                "An unexpected error occurred.",
                instance=scope["path"],
                request_id=request_id,
            )
            await response(scope, receive, send_with_request_id)
        finally:
            # Server errors at error level, so alerting on log level catches them.
            access_log.log(
                logging.ERROR if status >= 500 else logging.INFO,
                "request",
                method=scope["method"],
                route=route_template(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            structlog.contextvars.clear_contextvars()


class BodySizeLimitMiddleware:
    """Answers 413 for request bodies over ``max_bytes``, counted as they stream in.

    A declared Content-Length over the limit is refused before the body is read; chunked
    bodies are cut off once they pass it. FastAPI's own ``max_body_size`` answers in plain
    text; this one raises an ``HTTPException`` so the answer is a problem document.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the request body exceeds {self.max_bytes} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await problem_response(413, detail, instance=scope["path"])(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, counting_receive, send)


class TrustedHostMiddleware:
    """Refuses requests whose ``Host`` the service does not serve, with 400 problem+json.

    ``allowed_hosts`` holds host names, ``*.example.com`` for any subdomain, or ``*``
    for any host. The check is Starlette's ``TrustedHostMiddleware``'s; it is written
    out here because that one answers in plain text, not in the service's error format.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.exact = {host.lower() for host in allowed_hosts if not host.startswith("*")}
        self.suffixes = tuple(host[1:].lower() for host in allowed_hosts if host.startswith("*."))

    def allows(self, host: str) -> bool:
        return self.any_host or host in self.exact or host.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or self.any_host:
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"host"), b"")
        raw = header.decode("latin-1").lower()
        # Without the port; an IPv6 literal keeps its brackets.
        host = raw.split("]", 1)[0] + "]" if raw.startswith("[") else raw.split(":", 1)[0]
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        response = problem_response(400, "this service does not serve the requested host")
        await response(scope, receive, send)
