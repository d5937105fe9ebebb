"""ASGI middleware: request id, access log, last-resort 500, request body limit, deadline,
NUL characters refused, hosts.

Plain ASGI rather than ``BaseHTTPMiddleware``, so streaming responses are not buffered and
the request's context variables stay visible to the handlers.
"""

import json
import logging
import math
import re
import time
import uuid
from urllib.parse import parse_qsl

import anyio
import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .database import RETRY_AFTER_SECONDS
from .errors import problem_response

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and printable, so it is safe to log and echo.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = structlog.stdlib.get_logger("access")
# Asked before each line: at WARNING (no access lines) the line's fields are not built.
_access_level = logging.getLogger("access")
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


# Where the connection's own peer is kept, before X-Forwarded-For may replace the client.
PEER_STATE = "peer"


def connection_peer(scope: Scope) -> str | None:
    """The address of the connection's other end (a proxy or gateway, maybe), whatever
    client address a trusted proxy's X-Forwarded-For gave the request."""
    peer = scope.get("state", {}).get(PEER_STATE)
    return peer[0] if peer else None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            scope.setdefault("state", {})[PEER_STATE] = scope.get("client")
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
            level = logging.ERROR if status >= 500 else logging.INFO
            if _access_level.isEnabledFor(level):
                access_log.log(
                    level,
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


class RequestDeadlineMiddleware:
    """Answers 503 when a request has no response after ``seconds``, and cancels its work.

    The deadline covers producing the response, not sending it: once the status line is
    out, a slow client or a long download is no longer cut. The cancellation reaches the
    handler at its next await; a database connection it held goes back to the pool (or is
    discarded, if a statement was in flight) as the session closes.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        with anyio.CancelScope(deadline=anyio.current_time() + self.seconds) as deadline:

            async def send_before_deadline(message: Message) -> None:
                nonlocal response_started
                if message["type"] == "http.response.start":
                    response_started = True
                    deadline.deadline = math.inf
                await send(message)

            await self.app(scope, receive, send_before_deadline)
        if deadline.cancelled_caught and not response_started:
            logger.warning("request deadline exceeded", deadline_seconds=self.seconds)
            detail = f"the request did not complete within {self.seconds:g} s; retry later"
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            response = problem_response(503, detail, instance=scope["path"], headers=headers)
            await response(scope, receive, send)


# The JSON escape for U+0000 after an even run of backslashes (after an odd run, the
# backslash is escaped and the text is a literal backslash followed by "u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_MESSAGE = "NUL characters are not accepted"


def _json_body_declared(scope: Scope) -> bool:
    """Whether the request may carry a JSON body.

    In HTTP/1.x a request has a body only if it says so, with Content-Length or
    Transfer-Encoding (RFC 9112 section 6.3): most GETs need no read. Other versions may
    send one unannounced.
    """
    announced = scope.get("http_version") not in ("1.0", "1.1")
    is_json = True  # FastAPI reads a body without a content type as JSON
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            is_json = media_type == b"application/json" or media_type.endswith(b"+json")
        elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            announced = True
    return announced and is_json


class RejectNulMiddleware:
    """Answers 422 to requests carrying U+0000 in the path, the query, a header or a JSON
    body, naming where, as validation errors do. No text column stores it (PostgreSQL
    refuses it outright) and no legitimate client sends it, so it is refused here, once,
    rather than by every field of every slice.

    JSON bodies are read whole before the route runs (FastAPI reads them whole anyway);
    keep this inside the body size limit, which bounds that read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = _nul_outside_body(scope)
        if not fields and _json_body_declared(scope):
            try:
                body, receive = await read_body(receive)
            except HTTPException as exc:  # the size limit, while the body streams in
                response = problem_response(exc.status_code, exc.detail, instance=scope["path"])
                await response(scope, receive, send)
                return
            if _JSON_NUL.search(body):
                fields = _nul_fields(body)
        if fields:
            errors = [{"field": field, "message": _NUL_MESSAGE, "type": "nul"} for field in fields]
            detail = "The request is invalid; see 'errors'."
            response = problem_response(422, detail, instance=scope["path"], errors=errors)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it to the route once more."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def _nul_outside_body(scope: Scope) -> list[str]:
    fields = ["path"] if "\x00" in scope["path"] else []
    raw_query: bytes = scope["query_string"]
    if b"%00" in raw_query or b"\x00" in raw_query:
        query = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)
        fields += [f"query.{_printable(n)}" for n, value in query if "\x00" in n + value]
    headers = scope["headers"]
    fields += [f"header.{name.decode('latin-1')}" for name, value in headers if b"\x00" in value]
    return fields


def _printable(name: str) -> str:
    return name.replace("\x00", "\\x00")


def _nul_fields(body: bytes) -> list[str]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return []  # not JSON, or too deep for the parser: the route's parsing reports it
    return [".".join(["body", *path]) for path in _paths_with_nul(document, [])]


def _paths_with_nul(value: object, path: list[str]) -> list[list[str]]:
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [[*path, _printable(key)]] if "\x00" in key else []
            found += _paths_with_nul(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths_with_nul(item, [*path, str(index)])
    return found


class TrustedHostMiddleware:
    """Refuses requests whose ``Host`` the service does not serve, with 400 problem+json.

    ``allowed_hosts`` holds host names, ``*.example.com`` for any subdomain, or ``*``
    for any host. Paths starting with one of ``any_host_paths`` are served whatever the
    host: probes and scrapers address an instance by its IP address. The check is
    Starlette's ``TrustedHostMiddleware``'s; it is written out here because that one
    answers in plain text, not in the service's error format.
    """

    def __init__(
        self, app: ASGIApp, allowed_hosts: list[str], any_host_paths: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.any_host_paths = any_host_paths
        self.any_host = "*" in allowed_hosts
        self.exact = {host.lower() for host in allowed_hosts if not host.startswith("*")}
        self.suffixes = tuple(host[1:].lower() for host in allowed_hosts if host.startswith("*."))

    def allows(self, host: str) -> bool:
        return self.any_host or host in self.exact or host.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in {"http", "websocket"}
            or self.any_host
            or scope["path"].startswith(self.any_host_paths)
        ):
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
