"""``/graphql``: queries and mutations over HTTP, subscriptions over a WebSocket."""

import json
from typing import Any

# Strawberry's views refuse a request (a body that is not JSON, a method GraphQL does
# not take) with cross-web's exception, which FastAPI knows nothing of.
from cross_web import HTTPException as RefusedByView
from fastapi import APIRouter, Request, Response, WebSocket

from ..core.errors import problem_response, problem_responses
from .view import GraphQLView

PATH = "/graphql"

router = APIRouter(tags=["graphql"])

_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "description": "The GraphQL document"},
        "variables": {"type": ["object", "null"]},
        "operationName": {"type": ["string", "null"]},
        "extensions": {"type": ["object", "null"]},
    },
}
_RESULT: dict[str, Any] = {
    "description": "The result: data, and errors each with extensions.code",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "data": {"type": ["object", "null"]},
                    "errors": {"type": "array", "items": {"type": "object"}},
                    "extensions": {"type": "object"},
                },
            }
        }
    },
}


def _view(request: Request | WebSocket) -> GraphQLView:
    view: GraphQLView = request.app.state.graphql_view
    return view


async def _run(request: Request) -> Response:
    if request.method == "POST" and "json" in request.headers.get("content-type", ""):
        # Strawberry reads any JSON body as an object; refuse the rest here, plainly.
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
            body = None
        if not isinstance(body, dict):
            detail = "the body must be a JSON object with a 'query'"
            return problem_response(400, detail, instance=request.url.path)
    try:
        return await _view(request).run(request)
    except RefusedByView as refusal:
        return problem_response(refusal.status_code, refusal.reason, instance=request.url.path)


@router.get(
    PATH,
    summary="Run a query given in the URL, or open GraphiQL (when enabled)",
    responses={
        200: {
            **_RESULT,
            "content": {**_RESULT["content"], "text/html": {"schema": {"type": "string"}}},
        },
        **problem_responses(400, 401, 404, 405),
    },
    response_class=Response,
    openapi_extra={
        "parameters": [
            # Without a query, a browser gets GraphiQL (when enabled).
            {"name": "query", "in": "query", "schema": {"type": "string", "minLength": 1}},
            {"name": "variables", "in": "query", "schema": {"type": "string"}},
            {"name": "operationName", "in": "query", "schema": {"type": "string"}},
        ]
    },
)
async def graphql_get(request: Request) -> Response:
    return await _run(request)


@router.post(
    PATH,
    summary="Run a query or a mutation",
    responses={200: _RESULT, **problem_responses(400, 401, 415)},
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
        }
    },
)
async def graphql_post(request: Request) -> Response:
    return await _run(request)


@router.websocket(PATH)
async def graphql_subscriptions(websocket: WebSocket) -> None:
    await _view(websocket).run(websocket)
