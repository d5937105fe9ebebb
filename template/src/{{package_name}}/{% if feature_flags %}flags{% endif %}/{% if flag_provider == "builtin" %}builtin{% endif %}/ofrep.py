"""The OpenFeature Remote Evaluation Protocol, so other services and front ends can
evaluate this service's flags through any OFREP provider.

``POST /ofrep/v1/evaluate/flags/{key}`` evaluates one flag, ``POST /ofrep/v1/evaluate/flags``
all of them (with an ETag, so an unchanged answer is a 304). The context comes from the
request body, not from the caller's token; a bearer token is required.

Errors take OFREP's shape, not the problem documents of the rest of the API, because
OFREP providers read ``errorCode``: 404 ``FLAG_NOT_FOUND``, 400 ``PARSE_ERROR`` (the body
is not a JSON object) or ``INVALID_CONTEXT``, 500 ``PROVIDER_NOT_READY`` while the flag
definitions have not been loaded (the database was unreachable since start-up), which
"no flags" or "no such flag" would misstate. A disabled flag answers without a
``value``, which tells the provider to use the caller's default (OFREP ADR 0006,
proposed; openfeature-provider-ofrep 0.3 already does so).

A layer around the provider that serves keys of its own (flags/layers.py: the
experiments' arms) answers those keys here too, and adds to the context what it adds
for in-process reads (the caller's cohorts). A single evaluation counts as a read; a
bulk one, which a front end fetches and caches before showing anything, does not.
"""

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from pydantic import BaseModel, Field, JsonValue

from ...core.auth.dependencies import PrincipalDep
from ...core.errors import problem_responses
from ...core.etags import if_none_match_hits
from ..hooks import record_evaluation
from ..layers import serving_layer
from .evaluation import CompiledFlag
from .provider import BuiltinProvider
from .sync import FlagSync

router = APIRouter(prefix="/ofrep/v1", tags=["ofrep"], responses=problem_responses(401))


# ---------------------------------------------------------------- documented shapes


class OfrepEvaluation(BaseModel):
    key: str
    value: JsonValue = Field(default=None, description="Absent: use the caller's default")
    reason: str
    variant: str = Field(description="Empty when the flag is disabled")
    metadata: dict[str, JsonValue]


class OfrepFailure(BaseModel):
    key: str
    errorCode: str  # noqa: N815 - OFREP's field name
    errorDetails: str  # noqa: N815 - OFREP's field name


class OfrepBulkEvaluation(BaseModel):
    flags: list[OfrepEvaluation]


class OfrepBulkFailure(BaseModel):
    errorCode: str  # noqa: N815 - OFREP's field name
    errorDetails: str  # noqa: N815 - OFREP's field name


# The body is read by hand (OFREP's 400, not FastAPI's 422), so it is documented here.
_REQUEST_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "context": {
                            "type": "object",
                            "description": "Evaluation context; targetingKey is the user id",
                        }
                    },
                }
            }
        }
    }
}


# ---------------------------------------------------------------- evaluation


class InvalidRequestError(Exception):
    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


async def _evaluation_context(request: Request) -> EvaluationContext:
    raw = await request.body()
    if not raw.strip():
        return EvaluationContext()
    try:
        body = json.loads(raw)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise InvalidRequestError("PARSE_ERROR", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # nested deeper than the parser's stack allows
        raise InvalidRequestError("PARSE_ERROR", "the body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("PARSE_ERROR", "the body must be a JSON object")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise InvalidRequestError("INVALID_CONTEXT", "context must be a JSON object")
    attributes = dict(context)
    targeting_key = attributes.pop("targetingKey", None)
    if targeting_key is not None and not isinstance(targeting_key, str):
        raise InvalidRequestError("INVALID_CONTEXT", "context.targetingKey must be a string")
    return EvaluationContext(targeting_key, attributes)


def _evaluate(flag: CompiledFlag, context: EvaluationContext) -> dict[str, Any]:
    resolution = flag.evaluate(context.targeting_key, context.attributes)
    record_evaluation(flag.key, resolution.variant, resolution.reason)
    result: dict[str, Any] = {
        "key": flag.key,
        "reason": str(resolution.reason),
        # Always present: providers such as openfeature-provider-ofrep 0.3 require it.
        "variant": resolution.variant or "",
        "metadata": {},
    }
    if resolution.variant is not None:
        result["value"] = resolution.value
    return result


def _served(key: str, details: FlagResolutionDetails[JsonValue]) -> dict[str, Any]:
    """A layer's answer in OFREP's shape."""
    record_evaluation(key, details.variant, str(details.reason))
    return {
        "key": key,
        "reason": str(details.reason),
        "variant": details.variant or "",
        "metadata": dict(details.flag_metadata),
        "value": details.value,
    }


NOT_LOADED = "the flag definitions are not loaded yet (the database is unreachable); retry"


def _loaded(request: Request) -> bool:
    sync: FlagSync = request.app.state.flag_sync
    return sync.loaded


def _provider(request: Request) -> BuiltinProvider:
    provider: BuiltinProvider = request.app.state.flag_provider
    return provider


@router.post(
    "/evaluate/flags/{key}",
    openapi_extra=_REQUEST_BODY,
    responses={
        200: {"model": OfrepEvaluation},
        400: {"model": OfrepFailure},
        404: {"model": OfrepFailure},
        500: {"model": OfrepFailure, "description": "PROVIDER_NOT_READY: flags not loaded"},
    },
)
async def evaluate_flag(key: str, request: Request, _: PrincipalDep) -> JSONResponse:
    try:
        context = await _evaluation_context(request)
    except InvalidRequestError as exc:
        failure = {"key": key, "errorCode": exc.code, "errorDetails": exc.details}
        return JSONResponse(failure, status_code=400)
    if not _loaded(request):
        failure = {"key": key, "errorCode": "PROVIDER_NOT_READY", "errorDetails": NOT_LOADED}
        return JSONResponse(failure, status_code=500)
    layer = serving_layer(request.app)
    if layer is not None:
        context = layer.context_for(context)
        served = layer.resolve_untyped(key, context)
        if served is not None:
            return JSONResponse(_served(key, served))
    flag = _provider(request).compiled(key)
    if flag is None:
        record_evaluation(key, None, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
        return JSONResponse(
            {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": f"no flag {key!r}"},
            status_code=404,
        )
    return JSONResponse(_evaluate(flag, context))


@router.post(
    "/evaluate/flags",
    openapi_extra={
        **_REQUEST_BODY,
        "parameters": [{"name": "If-None-Match", "in": "header", "required": False, "schema": {}}],
    },
    responses={
        200: {"model": OfrepBulkEvaluation},
        304: {"description": "Not Modified"},
        400: {"model": OfrepBulkFailure},
        500: {"model": OfrepBulkFailure, "description": "PROVIDER_NOT_READY: flags not loaded"},
    },
)
async def evaluate_flags(request: Request, _: PrincipalDep) -> Response:
    try:
        context = await _evaluation_context(request)
    except InvalidRequestError as exc:
        failure = {"errorCode": exc.code, "errorDetails": exc.details}
        return JSONResponse(failure, status_code=400)
    if not _loaded(request):
        failure = {"errorCode": "PROVIDER_NOT_READY", "errorDetails": NOT_LOADED}
        return JSONResponse(failure, status_code=500)
    layer = serving_layer(request.app)
    if layer is not None:
        context = layer.context_for(context)
    evaluated = {flag.key: _evaluate(flag, context) for flag in _provider(request).all_compiled()}
    if layer is not None:
        for key in layer.served_keys(context):
            served = layer.resolve_untyped(key, context, read=False)
            if served is not None:
                evaluated[key] = _served(key, served)
    evaluations = [evaluated[key] for key in sorted(evaluated)]
    payload = json.dumps({"flags": evaluations}, separators=(",", ":"), sort_keys=True).encode()
    etag = '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
    if if_none_match_hits(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(payload, media_type="application/json", headers={"ETag": etag})
