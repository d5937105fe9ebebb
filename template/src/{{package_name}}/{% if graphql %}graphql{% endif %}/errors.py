"""GraphQL errors with stable codes, the problem types' counterparts, and no internals.

Every error in a response carries ``extensions.code``. The service's own errors keep their
message (they are written for clients); anything unexpected is logged with its traceback
and answered as ``INTERNAL_SERVER_ERROR`` with a message that gives nothing away.
"""

from typing import Any

import structlog
from graphql import GraphQLError, GraphQLSyntaxError
from pydantic import ValidationError
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from ..core.database import DatabaseFailure, database_failure
from ..core.errors import ProblemError

logger = structlog.stdlib.get_logger(__name__)

# The HTTP status a problem document would have had, as the code a GraphQL client reads.
CODES_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    422: "BAD_USER_INPUT",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}
INTERNAL = "INTERNAL_SERVER_ERROR"
TOO_LARGE = "OPERATION_TOO_LARGE"
# Strawberry's depth and alias limiters and graphql-core's token limit report plain
# errors; their messages are what tells them apart (tests/test_graphql.py checks them).
_LIMIT_MESSAGES = ("exceeds maximum operation depth", " aliases found. Allowed: ", " tokens.")
UNEXPECTED_MESSAGE = "Internal server error."
DATABASE_FAILURE_MESSAGES: dict[DatabaseFailure, str] = {
    "unavailable": "The database is unavailable; retry later.",
    "timed out": "The database did not answer in time; retry later.",
    "conflicted": "The database cancelled the operation's transaction in a conflict; retry.",
}
_REQUEST_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)


def error_with_code(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def _field_errors(error: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in detail["loc"]), "message": detail["msg"]}
        for detail in error.errors(include_url=False)
    ]


def classify(error: GraphQLError) -> str:
    """Gives ``error`` its code (masking it if unexpected); returns the code."""
    extensions = error.extensions if error.extensions is not None else {}
    error.extensions = extensions
    original = error.original_error
    if "code" in extensions:
        code: str = extensions["code"]
    elif original is None and any(part in error.message for part in _LIMIT_MESSAGES):
        code = TOO_LARGE
    elif original is None:
        # graphql-core's own: the document does not parse, or does not fit the schema.
        syntax = isinstance(error, GraphQLSyntaxError)
        code = "GRAPHQL_PARSE_FAILED" if syntax else "GRAPHQL_VALIDATION_FAILED"
    elif isinstance(original, GraphQLError) and error.path is None:
        # graphql-core's coercion of the variables (no field's path): a value the declared
        # type refuses.
        code = "BAD_USER_INPUT"
    elif isinstance(original, ProblemError):
        code = CODES_BY_STATUS.get(original.status, "BAD_REQUEST")
        if original.field is not None:
            extensions["field"] = original.field
    elif isinstance(original, _REQUEST_ERRORS):
        # Strawberry's refusals of the request itself (no document, no operation by the
        # name given): over HTTP its view answers them 400 before any operation starts.
        code = "BAD_REQUEST"
    elif isinstance(original, ValidationError):
        code = "BAD_USER_INPUT"
        error.message = "the input is not valid"
        extensions["errors"] = _field_errors(original)
    elif failure := database_failure(original):
        code = "SERVICE_UNAVAILABLE"
        error.message = DATABASE_FAILURE_MESSAGES[failure]
        logger.warning("database failure in a GraphQL operation", error=repr(original))
    else:
        code = INTERNAL
        logger.error(
            "GraphQL resolver failed",
            path=error.path,
            exc_info=(type(original), original, original.__traceback__),
        )
        error.message = UNEXPECTED_MESSAGE
        error.original_error = None
    extensions["code"] = code
    return code
