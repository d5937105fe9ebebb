"""Strawberry's view of the schema, behind the service's own routes.

The routes are FastAPI's (router.py): errors before execution (a body that is not JSON,
a method GraphQL does not take) answer as problem documents like every other route, and
the OpenAPI document describes them. Each application builds its view from its settings
(lifespan.py).
"""

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types.unset import UnsetType

from ..core.auth.dependencies import verify_request_token
from ..core.auth.principal import Principal
from ..core.errors import ProblemError, UnauthorizedError
from .context import GraphQLContext
from .errors import error_with_code
from .schema import ServiceSchema
from .settings import GraphQLSettings

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_EXTERNAL_SCRIPT = re.compile(r'<script\b[^>]*\bsrc="(https://[^"]+)"')
_STYLESHEET = re.compile(r'<link\b[^>]*\brel="stylesheet"[^>]*\bhref="(https://[^"]+)"')


def ide_policy(page: str) -> str:
    """GraphiQL's own Content-Security-Policy, made from its page: its inline script by
    hash, and exactly the files it loads from its CDN (each pinned in the page by an
    integrity hash). The API's policy (``default-src 'none'``, with request protection)
    would not let the page run; a response's own policy is kept."""
    scripts = [
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    ]
    scripts += _EXTERNAL_SCRIPT.findall(page)
    sheets = _STYLESHEET.findall(page)
    # Fonts come from where the stylesheets do; GraphiQL and its editor style elements
    # from script, which only 'unsafe-inline' admits for styles.
    font_origins = sorted({f"{part.scheme}://{part.netloc}" for part in map(urlsplit, sheets)})
    return "; ".join(
        (
            "default-src 'none'",
            "script-src " + " ".join(scripts),
            "style-src 'unsafe-inline' " + " ".join(sheets),
            "font-src data: " + " ".join(font_origins),
            "img-src 'self' data:",
            # Queries over fetch, subscriptions over a WebSocket, both to this origin.
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _subscribe_refusal(payload: object) -> str | None:
    """What is wrong with a ``subscribe`` message's payload, if anything."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "the payload must be a GraphQL request with the document as 'query'"
    if not isinstance(payload.get("variables") or {}, dict):
        return "'variables' must be an object"
    if not isinstance(payload.get("operationName") or "", str):
        return "'operationName' must be a string"
    return None


class TransportHandler(BaseGraphQLTransportWSHandler[GraphQLContext, None]):
    """Strawberry's graphql-transport-ws handler, answering with a coded ``error``
    message what it did not: a ``subscribe`` whose payload is no GraphQL request (it
    dropped the connection, 1006), and one past the connection's limit (an error without
    a code)."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            reason = _subscribe_refusal(message.get("payload"))
            code = "BAD_REQUEST"
            limit = self.max_subscriptions_per_connection
            if reason is None and limit is not None and len(self.operations) >= limit:
                reason = f"at most {limit} operations run at once on a connection"
                code = "TOO_MANY_OPERATIONS"
            if reason is not None:
                refusal = error_with_code(reason, code)
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [refusal.formatted]}
                )
                return
        await super().handle_subscribe(message)


def _bearer_token(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# Told who a WebSocket connection's caller is (None: anonymous), once it has
# authenticated, in the connection's task (the flags slice targets its reads so).
ConnectionHook = Callable[[WebSocket, Principal | None], None]


class GraphQLView(GraphQL[GraphQLContext, None]):
    graphql_transport_ws_handler_class = TransportHandler

    def __init__(
        self,
        schema: ServiceSchema,
        settings: GraphQLSettings,
        environment: str,
        on_connection: ConnectionHook | None = None,
    ) -> None:
        self._on_connection = on_connection
        self._ide: tuple[str, str] | None = None
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.ide_enabled(environment) else None,
            # The maintained protocol only; graphql-ws (the older one) is deprecated.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(
                seconds=settings.connection_init_timeout_seconds
            ),
            max_subscriptions_per_connection=settings.subscriptions_per_connection,
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        if self._ide is None:
            # Strawberry's property reads the page from its file on every call.
            page = self.graphql_ide_html
            self._ide = (page, ide_policy(page))
        page, policy = self._ide
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> GraphQLContext:
        principal: Principal | None = None
        if isinstance(request, Request):
            # As REST's optional principal: no token is anonymous, a bad one is a 401.
            authorization = request.headers.get("authorization")
            if authorization is not None:
                token = _bearer_token(authorization)
                if token is None:
                    raise UnauthorizedError("send the token as 'Authorization: Bearer ...'")
                principal = await verify_request_token(request, token)
        return GraphQLContext(request, principal)

    async def on_ws_connect(self, context: GraphQLContext) -> UnsetType | dict[str, object] | None:
        """Authenticates a WebSocket by its connection_init payload's ``Authorization``
        (``Bearer <token>``); without one the connection is anonymous, as HTTP is."""
        params: dict[str, Any] = context.connection_params
        authorization = params.get("Authorization", params.get("authorization"))
        if authorization is not None:
            token = _bearer_token(authorization)
            if token is None:
                raise ConnectionRejectionError({"code": "UNAUTHENTICATED"})
            try:
                context.principal = await verify_request_token(context.connection, token)
            except ProblemError as error:
                raise ConnectionRejectionError({"code": "UNAUTHENTICATED"}) from error
        if self._on_connection is not None and isinstance(context.connection, WebSocket):
            self._on_connection(context.connection, context.principal)
        return await super().on_ws_connect(context)
