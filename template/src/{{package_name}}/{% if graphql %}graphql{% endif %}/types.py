"""The GraphQL types: the items as REST shows them, in GraphQL's naming."""

import re
from datetime import datetime
from enum import Enum

import strawberry

from ..items.models import Item as ItemRow
from ..items.schemas import ItemQuery, ItemRead, SortKey
from .permissions import AdminOnly


@strawberry.type(description="Someone who created items.")
class Creator:
    subject: str
    item_count: int = strawberry.field(description="Items this subject created, all told.")


async def resolve_creator(root: "Item", info: strawberry.Info) -> Creator | None:
    count: int = await info.context.item_counts.load(root.created_by)
    return Creator(subject=root.created_by, item_count=count)


# Item ids are 64-bit integers and GraphQL's Int is 32-bit: they travel as ID, the
# decimal digits of the number, which clients treat as opaque.
_ITEM_ID = re.compile(r"[1-9][0-9]{0,18}")
_LARGEST_ID = 2**63 - 1


def id_of(number: int) -> strawberry.ID:
    """An item id as this API writes it."""
    return strawberry.ID(str(number))


def item_id(value: str) -> int | None:
    """The item id ``value`` spells, or None when it cannot be one."""
    if not _ITEM_ID.fullmatch(value):
        return None
    number = int(value)
    return number if number <= _LARGEST_ID else None


@strawberry.type(description="An item, as GET /api/v1/items/{id} sends it.")
class Item:
    id: strawberry.ID
    name: str
    description: str | None
    price_cents: int
    quantity: int
    created_by: str
    version: int = strawberry.field(
        description="Changes with every update; send it back as expectedVersion."
    )
    created_at: datetime
    updated_at: datetime

    # Nullable: a caller who may not read it still gets the rest of the item.
    creator: Creator | None = strawberry.field(
        resolver=resolve_creator,
        description="Who created the item and how many items they made (admins only).",
        permission_classes=[AdminOnly],
    )

    @classmethod
    def of(cls, row: ItemRow | ItemRead) -> "Item":
        return cls(
            id=id_of(row.id),
            name=row.name,
            description=row.description,
            price_cents=row.price_cents,
            quantity=row.quantity,
            created_by=row.created_by,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.enum(description="The orders of GET /api/v1/items?sort=")
class ItemSort(Enum):
    NAME_ASC = "name"
    NAME_DESC = "-name"
    PRICE_ASC = "price_cents"
    PRICE_DESC = "-price_cents"
    CREATED_ASC = "created_at"
    CREATED_DESC = "-created_at"

    @property
    def key(self) -> SortKey:
        key: SortKey = self.value
        return key


@strawberry.input(description="Filters of GET /api/v1/items; all given must match.")
class ItemFilter:
    name_contains: str | None = strawberry.field(default=None, description="Any case.")
    min_price_cents: int | None = None
    max_price_cents: int | None = None


@strawberry.type
class ItemEdge:
    cursor: str
    node: Item


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


async def resolve_total_count(root: "ItemConnection", info: strawberry.Info) -> int:
    async with info.context.items() as service:
        count: int = await service.count(root.query)
    return count


@strawberry.type(description="A page of items (the Relay connection form).")
class ItemConnection:
    edges: list[ItemEdge]
    page_info: PageInfo
    # Counted only when selected (one more query), as REST counts with include_total.
    total_count: int = strawberry.field(
        resolver=resolve_total_count, description="Items matching the filter, on every page."
    )
    # What the page was asked with, for the count.
    query: strawberry.Private[ItemQuery]


@strawberry.input
class CreateItemInput:
    name: str
    price_cents: int
    description: str | None = None
    quantity: int = 0


@strawberry.input(description="The fields to change; those left out keep their value.")
class UpdateItemInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    price_cents: int | None = strawberry.UNSET
    quantity: int | None = strawberry.UNSET


@strawberry.enum
class ChangeKind(Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


async def resolve_changed_item(root: "ItemChanged", info: strawberry.Info) -> Item | None:
    # Read only when asked for, on its own: a failed read nulls this field of this event,
    # and the subscription carries on.
    if root.kind is ChangeKind.DELETED:
        return None
    async with info.context.items() as service:
        row = await service.find(int(root.id))
    return None if row is None else Item.of(row)


@strawberry.type(description="An item was created, updated or deleted (through any API).")
class ItemChanged:
    kind: ChangeKind
    id: strawberry.ID
    version: int
    item: Item | None = strawberry.field(
        resolver=resolve_changed_item, description="Its state now; null once deleted."
    )
