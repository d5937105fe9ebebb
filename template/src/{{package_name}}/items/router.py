from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from ..core.auth.dependencies import PrincipalDep, require_roles
from ..core.auth.principal import Principal
from ..core.errors import ForbiddenError, PreconditionFailedError, problem_responses
from ..core.etags import etag_for, if_match_allows
from .dependencies import ItemDep, ItemId, ItemReaderDep, ItemServiceDep
from .models import Item
from .schemas import ItemCreate, ItemPage, ItemQuery, ItemRead, ItemUpdate

router = APIRouter(prefix="/api/v1/items", tags=["items"])

# Any text: a value that names no current entity tag (an empty one, a typo) is a
# precondition that fails, 412, as RFC 9110 section 13.1.1 evaluates it.
IfMatch = Annotated[
    str | None, Header(description="ETag from a previous read; 412 if the item changed since")
]
IfNoneMatch = Annotated[
    str | None, Header(description="ETag from a previous read; 304 if the item is unchanged")
]
ETAG_HEADER = {"ETag": {"description": "Version of the item", "schema": {"type": "string"}}}


def _check_if_match(header: str | None, item: Item) -> None:
    if not if_match_allows(header, etag_for(item.version)):
        raise PreconditionFailedError(f"item {item.id} changed; it is at version {item.version}")


def _check_owner(principal: Principal, item: Item) -> None:
    # Example policy: the creator or an admin may change an item.
    if item.created_by != principal.subject and not principal.has_roles("admin"):
        raise ForbiddenError("only the item's creator or an admin may change it")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {"headers": {**ETAG_HEADER, "Location": {"schema": {"type": "string"}}}},
        **problem_responses(401, 409, 422),
    },
)
async def create_item(
    principal: PrincipalDep,
    body: ItemCreate,
    service: ItemServiceDep,
    request: Request,
    response: Response,
) -> ItemRead:
    item = await service.create(body, created_by=principal.subject)
    # A path, not a URL: built from the Host header, a URL would echo whatever host a
    # client claims (RFC 9110 allows a relative Location).
    response.headers["Location"] = request.url_for("get_item", item_id=item.id).path
    response.headers["ETag"] = etag_for(item.version)
    return ItemRead.model_validate(item)


PAGE_ETAG_HEADER = {
    "ETag": {"description": "Version of this page's content", "schema": {"type": "string"}}
}


@router.get(
    "",
    response_model=ItemPage,
    responses={
        200: {"headers": PAGE_ETAG_HEADER},
        304: {"description": "Not Modified", "headers": PAGE_ETAG_HEADER},
        **problem_responses(422),
    },
)
async def list_items(
    query: Annotated[ItemQuery, Query()],
    service: ItemReaderDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    page = await service.read_page(query)
    return page.respond(if_none_match)


@router.get(
    "/{item_id}",
    response_model=ItemRead,
    responses={
        200: {"headers": ETAG_HEADER},
        304: {"description": "Not Modified", "headers": ETAG_HEADER},
        **problem_responses(404, 422),
    },
)
async def get_item(
    item_id: ItemId, service: ItemReaderDep, if_none_match: IfNoneMatch = None
) -> Response:
    representation = await service.read(item_id)
    return representation.respond(if_none_match)


@router.patch(
    "/{item_id}",
    responses={200: {"headers": ETAG_HEADER}, **problem_responses(401, 403, 404, 409, 412, 422)},
)
async def update_item(
    principal: PrincipalDep,
    item: ItemDep,
    changes: ItemUpdate,
    service: ItemServiceDep,
    response: Response,
    if_match: IfMatch = None,
) -> ItemRead:
    _check_owner(principal, item)
    _check_if_match(if_match, item)
    updated = await service.update(item, changes)
    response.headers["ETag"] = etag_for(updated.version)
    return ItemRead.model_validate(updated)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[Depends(require_roles("admin"))],
    responses=problem_responses(401, 403, 404, 409, 412, 422),
)
async def delete_item(item: ItemDep, service: ItemServiceDep, if_match: IfMatch = None) -> None:
    _check_if_match(if_match, item)
    await service.delete(item)
