"""HTTP semantics FastAPI leaves out: HEAD wherever GET is served, and an ``Allow``
header that names every method of a path."""

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The methods FastAPI routes can declare, besides HEAD (implied by GET) and OPTIONS.
ROUTABLE_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str] | None:
    """Every method some route serves at the request's path (RFC 9110 section 10.2.1);
    None where a mounted application owns the path and answers for itself.

    Starlette answers 405 with the methods of the first route whose path matched, so a
    path served by two routes (GET and POST on a collection) would advertise only one.
    Each method is tried against the routes as the router would, since included routers
    keep their routes to themselves.
    """
    if any(isinstance(route, Mount) and route.matches(scope)[0] is Match.FULL for route in routes):
        return None
    methods = {
        method
        for method in ROUTABLE_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    }
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class HeadAsGetMiddleware:
    """Answers HEAD as GET without the body, as RFC 9110 section 9.3.2 asks.

    FastAPI routes declare GET only; Starlette's own routes would add HEAD themselves.
    The headers, Content-Length included, are those GET would send.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        inner = {**scope, "method": "GET"}

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.start":
                # What the router found goes out too: the middleware outside this one
                # labels, logs and tags the answer by its route.
                for found in ("route", "endpoint", "path_params"):
                    if found in inner:
                        scope[found] = inner[found]
            elif message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(inner, receive, send_without_body)
