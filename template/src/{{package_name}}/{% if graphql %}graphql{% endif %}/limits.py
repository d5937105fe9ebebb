"""What one operation may ask for: its cost, and (optionally) which operations may run.

Depth, tokens and aliases are Strawberry's own limiters (schema.py). The cost is ours:
neither Strawberry nor graphql-core ships a cost analysis, and the packages that do are
small and unmaintained. A field costs 1; a field with a ``first`` argument (a page)
multiplies what is inside it by the page size, or by the largest page when the size is a
variable (validation runs before variables are known), or by its default page when
``first`` is left out. Fragments count where they are
spread.
"""

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from starlette.websockets import WebSocket
from strawberry import extensions as strawberry_extensions
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from ..items.schemas import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .errors import TOO_LARGE, error_with_code

# List fields and the page they give when ``first`` is left out.
DEFAULT_PAGE_SIZES = {"items": DEFAULT_PAGE_SIZE}


def _page_size(field: FieldNode) -> int:
    for argument in field.arguments or ():
        if argument.name.value == "first":
            value = argument.value
            if isinstance(value, IntValueNode):
                return max(1, min(int(value.value), MAX_PAGE_SIZE))
            return MAX_PAGE_SIZE
    return DEFAULT_PAGE_SIZES.get(field.name.value, 1)


def operation_cost(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> int:
    if selections is None:
        return 0
    cost = 0
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue  # __typename and introspection cost nothing extra
            inner = operation_cost(selection.selection_set, fragments, seen)
            cost += 1 + _page_size(selection) * inner
        elif isinstance(selection, InlineFragmentNode):
            cost += operation_cost(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            # A cycle is graphql-core's own validation error; count it once here.
            if fragment is not None and name not in seen:
                cost += operation_cost(fragment.selection_set, fragments, seen | {name})
    return cost


def cost_limit(max_cost: int) -> type[ValidationRule]:
    class CostLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
            context: ValidationContext = self.context
            fragments = {
                definition.name.value: definition
                for definition in context.document.definitions
                if isinstance(definition, FragmentDefinitionNode)
            }
            cost = operation_cost(node.selection_set, fragments)
            if cost > max_cost:
                name = node.name.value if node.name else "anonymous operation"
                context.report_error(
                    GraphQLError(
                        f"{name} costs {cost}, more than the {max_cost} one operation may",
                        node,
                        extensions={"code": TOO_LARGE, "cost": cost, "maxCost": max_cost},
                    )
                )

    return CostLimit


def query_hash(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def read_allow_list(path: Path) -> frozenset[str]:
    """The hashes in ``path``: one per line; blank lines and ``#`` comments are skipped."""
    hashes = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if len(entry) != 64 or any(c not in "0123456789abcdef" for c in entry):
            raise ValueError(f"{path}:{number}: {entry!r} is not a SHA-256 hex digest")
        hashes.add(entry)
    return frozenset(hashes)


class OperationRules(SchemaExtension):
    """What GraphQL over HTTP asks and Strawberry lets by: a document with several
    operations runs the one ``operationName`` names (Strawberry ran the first when none
    was named); a subscription runs over a WebSocket only (over HTTP Strawberry would run
    it as a field and fail it as an internal error)."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.pre_execution_errors:  # refused already: nothing to add
            yield
            return
        refusal = None
        document = context.graphql_document
        operations = (
            0
            if document is None
            else sum(isinstance(node, OperationDefinitionNode) for node in document.definitions)
        )
        # The name the client sent: Strawberry's operation_name falls back to the first
        # operation's (tests/test_graphql.py pins this).
        named: str | None = getattr(context, "_provided_operation_name", None)
        if operations > 1 and named is None:
            refusal = error_with_code(
                f"the document has {operations} operations: name one in operationName",
                "BAD_REQUEST",
            )
        else:
            try:
                subscription = context.operation_type is OperationType.SUBSCRIPTION
            except RuntimeError:  # no such operation: validation says so
                subscription = False
            if subscription and not isinstance(context.context.connection, WebSocket):
                refusal = error_with_code(
                    "subscriptions run over a WebSocket (graphql-transport-ws)", "BAD_REQUEST"
                )
        if refusal is not None:
            context.pre_execution_errors = [*(context.pre_execution_errors or []), refusal]
        yield


class ReportingParserCache(strawberry_extensions.ParserCache):
    """Strawberry's cache of parsed documents, leaving a document that does not parse
    (or is over the token limit) to Strawberry's own parse, which reports it as the
    operation's error. Raised from this hook, the error escaped the operation: over a
    WebSocket the client got a bare ``complete``."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield


class PersistedQueriesOnly(SchemaExtension):
    """Runs only the operations whose text hashes into the allow-list."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and query_hash(context.query) not in self.allowed:
            # Instead of validation's errors: whatever they are, it may not run.
            context.pre_execution_errors = [
                error_with_code(
                    "this operation is not on the service's allow-list",
                    "PERSISTED_QUERY_NOT_ALLOWED",
                )
            ]
        yield
