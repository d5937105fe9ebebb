"""The schema: items to query, change and follow, through the item service REST uses."""

from collections.abc import AsyncIterator
from typing import Any

import strawberry
from pydantic import ValidationError

from ..core.errors import (
    ForbiddenError,
    NotFoundError,
    PreconditionFailedError,
    ProblemError,
    UnauthorizedError,
)
from ..items.models import Item as ItemRow
from ..items.schemas import (
    DEFAULT_PAGE_SIZE,
    ItemCreate,
    ItemPage,
    ItemPosition,
    ItemQuery,
    ItemRead,
    ItemUpdate,
)
from .context import GraphQLContext
from .errors import classify
from .events import ItemEvents
from .types import (
    ChangeKind,
    CreateItemInput,
    Item,
    ItemChanged,
    ItemConnection,
    ItemEdge,
    ItemFilter,
    ItemSort,
    PageInfo,
    UpdateItemInput,
    id_of,
    item_id,
)

Info = strawberry.Info[GraphQLContext, None]


class InvalidArgumentError(ProblemError):
    status = 422


# Names of the REST models' fields as this API calls them, for BAD_USER_INPUT's list.
_INPUT_NAMES = {
    "name": "input.name",
    "description": "input.description",
    "price_cents": "input.priceCents",
    "quantity": "input.quantity",
}
_ARGUMENT_NAMES = {
    "limit": "first",
    "cursor": "after",
    "q": "filter.nameContains",
    "min_price_cents": "filter.minPriceCents",
    "max_price_cents": "filter.maxPriceCents",
}


def _renamed(error: ValidationError, names: dict[str, str]) -> ValidationError:
    """The same error with the GraphQL argument names in its locations."""
    details: list[Any] = [
        {**detail, "loc": (names.get(str(detail["loc"][0]), detail["loc"][0]), *detail["loc"][1:])}
        if detail["loc"]
        # A rule over the whole input (at least one field; no nulls): the input itself.
        else {**detail, "loc": ("input",)}
        for detail in error.errors(include_url=False)
    ]
    return ValidationError.from_exception_data(error.title, details)


def _item_id(value: strawberry.ID) -> int:
    number = item_id(value)
    if number is None:
        raise InvalidArgumentError(f"{value!r} is not an item id", field="id")
    return number


def _caller_may_change(info: Info, row: ItemRow, expected_version: int | None) -> None:
    principal = info.context.principal
    if principal is None:
        raise UnauthorizedError("a bearer token is required", error=None)
    # The REST routes' policy: the creator or an admin may change an item.
    if row.created_by != principal.subject and not principal.has_roles("admin"):
        raise ForbiddenError("only the item's creator or an admin may change it")
    if expected_version is not None and expected_version != row.version:
        raise PreconditionFailedError(
            f"item {row.id} changed; it is at version {row.version}", field="expectedVersion"
        )


# The resolvers are functions, given to the fields below, so the types stay checkable.


async def item(info: Info, id: strawberry.ID) -> Item | None:
    number = _item_id(id)
    # REST's read, so GraphQL shares its cache: the body as REST sends it, parsed back.
    async with info.context.items() as service:
        try:
            representation = await service.read(number)
        except NotFoundError:
            return None
    return Item.of(ItemRead.model_validate_json(representation.body))


async def items(
    info: Info,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
    filter: ItemFilter | None = None,
    sort: ItemSort = ItemSort.CREATED_ASC,
) -> ItemConnection:
    if after is not None:
        _check_cursor(after, sort)
    filters = filter or ItemFilter()
    try:
        query = ItemQuery(
            limit=first,
            cursor=after,
            q=filters.name_contains,
            min_price_cents=filters.min_price_cents,
            max_price_cents=filters.max_price_cents,
            sort=sort.key,
        )
    except ValidationError as error:
        raise _renamed(error, _ARGUMENT_NAMES) from None
    async with info.context.items() as service:
        representation = await service.read_page(query)
    page = ItemPage.model_validate_json(representation.body)
    # REST's cursors: an edge's continues the list after its item.
    edges = [
        ItemEdge(cursor=ItemPosition.of(read, query.sort).cursor(), node=Item.of(read))
        for read in page.items
    ]
    return ItemConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.next_cursor is not None,
            # Relay lets forward paging answer this cheaply: after a cursor, its item
            # came before (unless deleted since).
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        query=query,
    )


def _check_cursor(after: str, sort: ItemSort) -> None:
    try:
        position = ItemPosition.from_cursor(after)
    except ValueError:
        raise InvalidArgumentError(
            "after is not a cursor this API gave out", field="after"
        ) from None
    if position.sort != sort.key:
        (given_for,) = [other.name for other in ItemSort if other.key == position.sort]
        raise InvalidArgumentError(f"after continues the list sorted by {given_for}", field="after")


async def create_item(info: Info, input: CreateItemInput) -> Item:
    principal = info.context.principal
    if principal is None:
        raise UnauthorizedError("a bearer token is required", error=None)
    try:
        data = ItemCreate.model_validate(
            {
                "name": input.name,
                "description": input.description,
                "price_cents": input.price_cents,
                "quantity": input.quantity,
            }
        )
    except ValidationError as error:
        raise _renamed(error, _INPUT_NAMES) from None
    async with info.context.items() as service:
        row = await service.create(data, created_by=principal.subject)
        return Item.of(row)


async def update_item(
    info: Info, id: strawberry.ID, input: UpdateItemInput, expected_version: int | None = None
) -> Item:
    number = _item_id(id)
    fields = {name: value for name, value in vars(input).items() if value is not strawberry.UNSET}
    try:
        changes = ItemUpdate.model_validate(fields)
    except ValidationError as error:
        raise _renamed(error, _INPUT_NAMES) from None
    async with info.context.items() as service:
        row = await service.get(number)
        _caller_may_change(info, row, expected_version)
        return Item.of(await service.update(row, changes))


async def delete_item(
    info: Info, id: strawberry.ID, expected_version: int | None = None
) -> strawberry.ID:
    number = _item_id(id)
    principal = info.context.principal
    if principal is None:
        raise UnauthorizedError("a bearer token is required", error=None)
    # As REST's DELETE: admins only.
    if not principal.has_roles("admin"):
        raise ForbiddenError("only admins may delete items")
    async with info.context.items() as service:
        row = await service.get(number)
        _caller_may_change(info, row, expected_version)
        await service.delete(row)
    return id_of(number)


async def item_changed(info: Info, id: strawberry.ID | None = None) -> AsyncIterator[ItemChanged]:
    wanted = None if id is None else _item_id(id)
    # With tenants, a subscriber hears of its own tenant's items only.
    tenant = info.context.tenant()
    events: ItemEvents = info.context.connection.app.state.graphql_events
    async for change in events.changes():
        if change.tenant == tenant and (wanted is None or change.item_id == wanted):
            yield ItemChanged(
                kind=ChangeKind(change.kind),
                id=id_of(change.item_id),
                version=change.version,
            )


@strawberry.type
class Query:
    item: Item | None = strawberry.field(
        resolver=item, description="One item, or null when there is none with this id."
    )
    items: ItemConnection = strawberry.field(
        resolver=items, description="Items a page at a time, filtered and sorted as in REST."
    )


@strawberry.type
class Mutation:
    create_item: Item = strawberry.mutation(
        resolver=create_item, description="Creates an item; the caller becomes its creator."
    )
    update_item: Item = strawberry.mutation(
        resolver=update_item,
        description="Changes the fields given. With expectedVersion, only if the item is "
        "still at that version (PRECONDITION_FAILED otherwise).",
    )
    delete_item: strawberry.ID = strawberry.mutation(
        resolver=delete_item, description="Deletes an item (admins only); returns its id."
    )


@strawberry.type
class Subscription:
    item_changed: AsyncIterator[ItemChanged] = strawberry.subscription(
        resolver=item_changed,
        description="Every committed change to items (or to the one with this id), "
        "whichever API made it.",
    )


class ServiceSchema(strawberry.Schema):
    """Gives every error its code and masks the unexpected (errors.py) instead of
    Strawberry's logging of each error's traceback."""

    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        for error in errors:
            classify(error)


def schema_text() -> str:
    """The schema in GraphQL's own language, as ``graphql export`` writes it."""
    schema = ServiceSchema(query=Query, mutation=Mutation, subscription=Subscription)
    return schema.as_str() + "\n"
