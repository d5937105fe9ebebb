"""Item use cases. Raises problem errors; knows nothing about HTTP requests."""

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ..core.errors import ConflictError, NotFoundError
from ..core.etags import etag_for
from ..core.representations import Representation
from ..core.tenant import current_tenant
from .changes import ChangeKind, ItemChange, ItemChanges
from .models import Item
from .schemas import ItemCreate, ItemPage, ItemPosition, ItemQuery, ItemRead, ItemUpdate


def _matching(query: ItemQuery) -> list[ColumnElement[bool]]:
    """The query's filters as conditions on items."""
    conditions: list[ColumnElement[bool]] = []
    if query.q:
        conditions.append(Item.name.icontains(query.q, autoescape=True))
    if query.min_price_cents is not None:
        conditions.append(Item.price_cents >= query.min_price_cents)
    if query.max_price_cents is not None:
        conditions.append(Item.price_cents <= query.max_price_cents)
    return conditions


class ItemService:
    """Reads return rendered representations, so that a cached service (``cached.py``,
    with the caching slice) can answer them from its cache with the same interface."""

    def __init__(self, session: AsyncSession, changes: ItemChanges | None = None) -> None:
        self._session = session
        self._changes = changes

    async def create(self, data: ItemCreate, *, created_by: str) -> Item:
        item = Item(**data.model_dump(), created_by=created_by)
        self._session.add(item)
        await self._commit(item, "created", conflict=f"an item named {data.name!r} already exists")
        return item

    async def find(self, item_id: int) -> Item | None:
        return await self._session.get(Item, item_id)

    async def get(self, item_id: int) -> Item:
        item = await self.find(item_id)
        if item is None:
            raise NotFoundError(f"item {item_id} does not exist")
        return item

    async def read(self, item_id: int) -> Representation:
        """The item as ``GET /items/{id}`` sends it, tagged by its version."""
        item = await self.get(item_id)
        return Representation.of(ItemRead.model_validate(item), etag=etag_for(item.version))

    async def read_page(self, query: ItemQuery) -> Representation:
        """A page of items as ``GET /items`` sends it, tagged by its content."""
        items, more = await self.list(query)
        reads = [ItemRead.model_validate(item) for item in items]
        page = ItemPage(
            items=reads,
            next_cursor=ItemPosition.of(reads[-1], query.sort).cursor() if more else None,
            total=await self.count(query) if query.include_total else None,
            limit=query.limit,
            offset=query.offset,
        )
        return Representation.of(page)

    async def list(self, query: ItemQuery) -> tuple[list[Item], bool]:
        """The page ``query`` asks for, and whether more items follow it."""
        column = getattr(Item, query.sort.removeprefix("-"))
        descending = query.sort.startswith("-")
        conditions = _matching(query)
        after = query.after()
        if after is not None:
            # The rows after the cursor's in ORDER BY's order: (value, id) with value in
            # the sort's direction and ties by ascending id. The first condition alone
            # bounds the sort column's index; without it the OR would read it all.
            if descending:
                conditions.append(column <= after.value)
                conditions.append(or_(column < after.value, Item.id > after.id))
            else:
                conditions.append(column >= after.value)
                conditions.append(or_(column > after.value, Item.id > after.id))
        # One row more than the page: whether it exists says if a next page does,
        # without counting every match.
        rows = await self._session.scalars(
            select(Item)
            .where(*conditions)
            .order_by(column.desc() if descending else column.asc(), Item.id.asc())
            .limit(query.limit + 1)
            .offset(query.offset)
        )
        items = list(rows)
        return items[: query.limit], len(items) > query.limit

    async def count(self, query: ItemQuery) -> int:
        """How many items match the query's filters, on every page."""
        total = await self._session.scalar(
            select(func.count()).select_from(Item).where(*_matching(query))
        )
        return total or 0

    async def update(self, item: Item, changes: ItemUpdate) -> Item:
        for field, value in changes.model_dump(exclude_unset=True).items():
            setattr(item, field, value)
        await self._commit(
            item, "updated", conflict=f"an item named {changes.name!r} already exists"
        )
        return item

    async def delete(self, item: Item) -> None:
        await self._session.delete(item)
        await self._commit(item, "deleted", conflict=f"item {item.id} is still referenced")

    async def _commit(self, item: Item, kind: ChangeKind, *, conflict: str) -> None:
        """Commits a change to ``item``; every write goes through here."""
        await self._commit_session(conflict=conflict)
        await self.committed(item)
        if self._changes is not None:
            # The item's tenant: its tenant_id column where the tenancy slice keeps one
            # (row isolation), else the tenant the code acts for (a schema or database
            # per tenant), None without tenants.
            tenant = getattr(item, "tenant_id", None) or current_tenant.get()
            self._changes.announce(ItemChange(kind, item.id, item.version, tenant))

    async def committed(self, item: Item) -> None:
        """Runs after each successful commit that changed ``item``, before the write
        returns: what a subclass keeps derived from items (a cache) is updated here."""

    async def _commit_session(self, *, conflict: str) -> None:
        try:
            await self._session.commit()
        except StaleDataError as exc:
            await self._session.rollback()
            raise ConflictError("the item was changed concurrently; fetch it and retry") from exc
        except IntegrityError as exc:
            await self._session.rollback()
            raise ConflictError(conflict) from exc
