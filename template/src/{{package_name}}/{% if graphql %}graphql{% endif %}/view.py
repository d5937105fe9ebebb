"""Strawberry's view of the schema, behind the service's own routes.

The routes are FastAPI's (router.py): errors before execution (a body that is not JSON,
a method GraphQL does not take) answer as problem documents like every other route, and
the OpenAPI document describes them. Each application builds its view from its settings
(lifespan.py).
"""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from ..core.auth.dependencies import verify_request_token
from ..core.auth.principal import Principal
from ..core.errors import ProblemError, UnauthorizedError
from .context import GraphQLContext
from .schema import ServiceSchema
from .settings import GraphQLSettings


def _bearer_token(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


# Told who a WebSocket connection's caller is (None: anonymous), once it has
# authenticated, in the connection's task (the flags slice targets its reads so).
ConnectionHook = Callable[[WebSocket, Principal | None], None]


class GraphQLView(GraphQL[GraphQLContext, None]):
    def __init__(
        self,
        schema: ServiceSchema,
        settings: GraphQLSettings,
        environment: str,
        on_connection: ConnectionHook | None = None,
    ) -> None:
        self._on_connection = on_connection
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
