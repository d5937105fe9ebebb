"""Shapes of request refused before any handler runs, each naming what it exceeded.

Each check reads only what the ASGI scope already holds (the request line and the
headers); the JSON limits read the body, which the core's body limit has bounded.
"""

import json
from dataclasses import dataclass, field

from starlette.types import Scope

from .observer import Reason
from .settings import FilterSettings


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: Reason
    detail: str
    headers: dict[str, str] = field(default_factory=dict)


class RequestFilters:
    def __init__(self, settings: FilterSettings) -> None:
        self.settings = settings
        self.methods = frozenset(method.upper() for method in settings.allowed_methods)
        self.allow = ", ".join(sorted(self.methods))
        self.content_types = frozenset(
            media.lower().encode("latin-1") for media in settings.content_types
        )

    def check(self, scope: Scope) -> Refusal | None:
        """The first rule the request breaks, or None."""
        settings = self.settings
        # A WebSocket's handshake is a GET, which its scope does not say.
        method = scope.get("method", "GET")
        if method not in self.methods:
            return Refusal(405, "method", f"method {method} is not served", {"Allow": self.allow})
        query: bytes = scope["query_string"]
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(query) + 1
        if url_bytes > settings.max_url_bytes:
            return Refusal(414, "url_length", f"the URL exceeds {settings.max_url_bytes} bytes")
        if query and query.count(b"&") + 1 > settings.max_query_parameters:
            return Refusal(
                400,
                "query_parameters",
                f"more than {settings.max_query_parameters} query parameters",
            )
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if len(headers) > settings.max_headers:
            return Refusal(431, "headers", f"more than {settings.max_headers} header fields")
        size = sum(len(name) + len(value) for name, value in headers)
        if size > settings.max_header_bytes:
            return Refusal(431, "headers", f"the headers exceed {settings.max_header_bytes} bytes")
        return self._content_type(headers)

    def _content_type(self, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
        content_type = None
        has_body = False
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                has_body = value.strip() not in {b"0", b""}
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body or content_type is None:
            # Without a type, FastAPI's own check answers (422): nothing to add here.
            return None
        media = content_type.split(b";", 1)[0].strip().lower()
        if media in self.content_types or (
            media.endswith(b"+json") and b"application/json" in self.content_types
        ):
            return None
        accepted = ", ".join(self.settings.content_types)
        return Refusal(
            415,
            "content_type",
            f"request bodies must be one of: {accepted}",
            {"Accept": accepted},
        )


def json_refusal(body: bytes, settings: FilterSettings) -> Refusal | None:
    """Whether a JSON body nests deeper or holds longer arrays than allowed.

    Counting brackets and commas (fast, in C) shows most bodies cannot break either
    limit; only the others are parsed. A body that is not JSON is left to the route.
    """
    brackets = body.count(b"[") + body.count(b"{")
    commas = body.count(b",")
    if brackets <= settings.max_json_depth and commas < settings.max_json_array_items:
        return None
    try:
        document = json.loads(body)
    except RecursionError:
        depth, longest = settings.max_json_depth + 1, 0  # deeper than the parser goes
    except ValueError:
        return None  # not JSON: the route's own parsing reports it
    else:
        depth, longest = _shape(document)
    if depth > settings.max_json_depth:
        return Refusal(
            400, "json_depth", f"the JSON body nests deeper than {settings.max_json_depth} levels"
        )
    if longest > settings.max_json_array_items:
        return Refusal(
            400,
            "json_array",
            f"a JSON array in the body has more than {settings.max_json_array_items} items",
        )
    return None


def _shape(document: object) -> tuple[int, int]:
    """The nesting depth and the longest array of ``document``, without recursion."""
    depth = longest = 0
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, dict):
            depth = max(depth, level)
            pending.extend((item, level + 1) for item in value.values())
        elif isinstance(value, list):
            depth = max(depth, level)
            longest = max(longest, len(value))
            pending.extend((item, level + 1) for item in value)
    return depth, longest
