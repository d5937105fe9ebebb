"""Strawberry's view of the schema, behind the service's own routes.

The routes are FastAPI's (router.py): errors before execution (a body that is not JSON,
a method GraphQL does not take) answer as problem documents like every other route, and
the OpenAPI document describes them. Each application builds its view from its settings
(lifespan.py).
"""

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message,
    SubscribeMessage,
)
from strawberry.types.unset import UnsetType

from ..core.auth.dependencies import verify_request_token
from ..core.auth.principal import Principal
from ..core.content_security import source_hash
from ..core.errors import ProblemError, UnauthorizedError
from .context import GraphQLContext, TenantCheck
from .errors import CODES_BY_STATUS, error_with_code
from .schema import ServiceSchema
from .settings import GraphQLSettings


class _PageSources(HTMLParser):
    """What a page runs and styles itself with: its inline scripts, and the URLs of its
    external scripts and stylesheets."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            source = attributes.get("src")
            if source:
                self.scripts.append(source)
            else:
                self._in_inline_script = True
                self.inline_scripts.append("")
        elif (
            tag == "link"
            and "stylesheet" in (attributes.get("rel") or "").split()
            and attributes.get("href")
        ):
            self.stylesheets.append(str(attributes["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def ide_policy(page: str) -> str:
    """GraphiQL's own Content-Security-Policy, made from its page: its inline script by
    hash, and exactly the files it loads from its CDN (each pinned in the page by an
    integrity hash). The API's policy (``default-src 'none'``, with request protection)
    would not let the page run; a response's own policy is kept."""
    sources = _PageSources()
    sources.feed(page)
    sources.close()
    scripts = [source_hash(script.encode()) for script in sources.inline_scripts]
    scripts += sources.scripts
    sheets = sources.stylesheets
    # Fonts come from where the stylesheets do; GraphiQL and its editor style elements
    # from script, which only 'unsafe-inline' admits for styles.
    font_origins = sorted(
        {f"{part.scheme}://{part.netloc}" for part in map(urlsplit, sheets) if part.netloc}
    )
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


# The longest close reason a WebSocket close frame carries (RFC 6455: 125 bytes of
# payload, 2 of them the code).
_CLOSE_REASON_BYTES = 123


def _subscribe_refusal(payload: object) -> str | None:
    """What is wrong with a ``subscribe`` message's payload, if anything."""
    if not isinstance(payload, dict):
        return "the payload must be a GraphQL request: an object with the document as 'query'"
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        return "'query' must be the GraphQL document, a string"
    for name, kind, what in (
        ("variables", dict, "an object"),
        ("extensions", dict, "an object"),
        ("operationName", str, "a string"),
    ):
        value = payload.get(name)
        if value is not None and not isinstance(value, kind):
            return f"'{name}' must be {what} or null"
    return None


def _close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds (a longer one failed the close)."""
    encoded = reason.encode()
    if len(encoded) <= _CLOSE_REASON_BYTES:
        return reason
    return encoded[: _CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."


class TransportHandler(BaseGraphQLTransportWSHandler[GraphQLContext, None]):
    """Strawberry's graphql-transport-ws handler, answering with a coded ``error``
    message what it did not: a ``subscribe`` whose payload is no GraphQL request (it
    dropped the connection, 1006), and one past the connection's limit (an error without
    a code)."""

    async def handle_message(self, message: Message) -> None:
        # Strawberry indexes messages and keys operations by id: anything else failed in
        # it (an ASGI error, the socket dropped) instead of closing as the protocol says.
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.handle_invalid_message("a message must be an object with a 'type'")
            return
        if message["type"] in {"subscribe", "complete"} and not isinstance(message.get("id"), str):
            await self.handle_invalid_message("the message's 'id' must be a string")
            return
        await super().handle_message(message)

    async def handle_invalid_message(self, error_message: str) -> None:
        await super().handle_invalid_message(_close_reason(error_message))

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            reason = _subscribe_refusal(message.get("payload"))
            code = "BAD_REQUEST"
            limit = self.max_subscriptions_per_connection
            if reason is None and limit is not None and len(self.operations) >= limit:
                reason = f"at most {limit} operations run at once on a connection"
                code = "TOO_MANY_OPERATIONS"
            refusal = error_with_code(reason, code) if reason is not None else None
            if refusal is None and isinstance(self.view, GraphQLView):
                refusal = await self.view.admit_operation(self.context)
            if refusal is not None:
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [refusal.formatted]}
                )
                return
        await super().handle_subscribe(message)

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        # A document that does not parse closes the connection with its parse error as
        # the reason, as the protocol's reference server does; cut to what fits.
        reason = BaseGraphQLTransportWSHandler._get_pre_execution_close_reason(error)
        return None if reason is None else _close_reason(reason)


def _bearer_token(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# Told who a WebSocket connection's caller is (None: anonymous), once it has
# authenticated, in the connection's task (the flags slice targets its reads so).
ConnectionHook = Callable[[WebSocket, Principal | None], None]
# Decides, once a WebSocket's caller is known and before it is acknowledged, whether the
# connection may go on; refuses with a ProblemError (the tenancy slice: the tenant its
# token names must exist, be active and agree with the handshake's).
ConnectionAdmission = Callable[[WebSocket, Principal | None], Awaitable[None]]


class GraphQLView(GraphQL[GraphQLContext, None]):
    graphql_transport_ws_handler_class = TransportHandler

    def decode_json(self, data: str | bytes) -> object:
        """Strawberry's parse of a WebSocket message: one nested past the parser's
        recursion limit is not JSON to it (closed with 4400), not an error of the app."""
        try:
            return json.loads(data)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", "", 0) from None

    def __init__(
        self,
        schema: ServiceSchema,
        settings: GraphQLSettings,
        environment: str,
        on_connection: ConnectionHook | None = None,
        admission: ConnectionAdmission | None = None,
        operation_admission: ConnectionAdmission | None = None,
        tenant_check: TenantCheck | None = None,
    ) -> None:
        self._on_connection = on_connection
        self._admission = admission
        # Decides each operation a WebSocket starts, as the HTTP middleware decides each
        # request (the tenancy slice: the tenant still active, within its daily quota).
        self._operation_admission = operation_admission
        self._tenant_check = tenant_check
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
        return GraphQLContext(request, principal, self._tenant_check)

    async def admit_operation(self, context: GraphQLContext) -> GraphQLError | None:
        """The refusal of an operation a WebSocket starts, coded; None to run it."""
        if self._operation_admission is None or not isinstance(context.connection, WebSocket):
            return None
        try:
            await self._operation_admission(context.connection, context.principal)
        except ProblemError as refusal:
            return error_with_code(
                refusal.detail, CODES_BY_STATUS.get(refusal.status, "BAD_REQUEST")
            )
        return None

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
        if self._admission is not None and isinstance(context.connection, WebSocket):
            try:
                await self._admission(context.connection, context.principal)
            except ProblemError as refusal:
                code = CODES_BY_STATUS.get(refusal.status, "BAD_REQUEST")
                raise ConnectionRejectionError({"code": code, "message": refusal.detail}) from None
        if self._on_connection is not None and isinstance(context.connection, WebSocket):
            self._on_connection(context.connection, context.principal)
        return await super().on_ws_connect(context)
