"""Item use cases. Raises problem errors; knows nothing about HTTP requests."""

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ..core.errors import ConflictError, NotFoundError
from ..core.etags import etag_for
from ..core.representations import Representation
from ..core.tenant import current_tenant
from .changes import ChangeKind, ItemChange, ItemChanges
from .models import Item
from .schemas import ItemCreate, ItemPage, ItemQuery, ItemRead, ItemUpdate


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
        items, total = await self.list(query)
        page = ItemPage(
            items=[ItemRead.model_validate(item) for item in items],
            total=total,
            limit=query.limit,
            offset=query.offset,
        )
        return Representation.of(page)

    async def list(self, query: ItemQuery) -> tuple[list[Item], int]:
        conditions: list[ColumnElement[bool]] = []
        if query.q:
            conditions.append(Item.name.icontains(query.q, autoescape=True))
        if query.min_price_cents is not None:
            conditions.append(Item.price_cents >= query.min_price_cents)
        if query.max_price_cents is not None:
            conditions.append(Item.price_cents <= query.max_price_cents)
        total = await self._session.scalar(
            select(func.count()).select_from(Item).where(*conditions)
        )
        column = getattr(Item, query.sort.removeprefix("-"))
        order = column.desc() if query.sort.startswith("-") else column.asc()
        rows = await self._session.scalars(
            select(Item)
            .where(*conditions)
            .order_by(order, Item.id.asc())
            .limit(query.limit)
            .offset(query.offset)
        )
        return list(rows), total or 0

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
