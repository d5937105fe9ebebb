"""The baselines: a bare FastAPI app, served like the service.

``GET /`` returns a small dict. With ``BARE_DATABASE_URL`` set (an async SQLAlchemy URL)
the app also reads the service's ``items`` table the way a plain FastAPI + SQLAlchemy
tutorial app would: a session per request, ``session.get`` for one row, a sorted page for
the list, each answered through a Pydantic response model. No middleware, no count, no
entity tags: what the service's item routes are measured against (throughput.py).
"""

import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

app = FastAPI()


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok"}


if os.environ.get("BARE_DATABASE_URL"):
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    engine = create_async_engine(os.environ["BARE_DATABASE_URL"])
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"

        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        description: Mapped[str | None]
        price_cents: Mapped[int]
        quantity: Mapped[int]
        created_by: Mapped[str]
        version: Mapped[int]
        created_at: Mapped[datetime]
        updated_at: Mapped[datetime]

    class ItemRead(BaseModel):
        model_config = ConfigDict(from_attributes=True)

        id: int
        name: str
        description: str | None
        price_cents: int
        quantity: int
        created_by: str
        version: int
        created_at: datetime
        updated_at: datetime

    async def session() -> AsyncIterator[AsyncSession]:
        async with sessions() as db:
            yield db

    SessionDep = Annotated[AsyncSession, Depends(session)]

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, db: SessionDep) -> ItemRead:
        item = await db.get(Item, item_id)
        if item is None:
            raise HTTPException(404)
        return ItemRead.model_validate(item)

    @app.get("/items")
    async def list_items(db: SessionDep, limit: int = 20, offset: int = 0) -> list[ItemRead]:
        page = select(Item).order_by(Item.created_at, Item.id).limit(limit).offset(offset)
        return [ItemRead.model_validate(item) for item in await db.scalars(page)]
