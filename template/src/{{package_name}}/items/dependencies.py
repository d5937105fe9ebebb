from typing import Annotated

from fastapi import Depends, Path

from ..core.database import SessionDep
from .models import Item
from .service import ItemService


# async, though it awaits nothing: FastAPI runs plain def dependencies in a thread pool.
async def item_service(session: SessionDep) -> ItemService:
    return ItemService(session)


ItemServiceDep = Annotated[ItemService, Depends(item_service)]


async def existing_item(
    item_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="Item id")],
    service: ItemServiceDep,
) -> Item:
    return await service.get(item_id)


ItemDep = Annotated[Item, Depends(existing_item)]
