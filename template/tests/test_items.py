"""The items API end to end: every endpoint, its validation and its error paths."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from .support import ITEMS, TokenFactory, assert_problem, create


async def test_create_returns_item_location_and_etag(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        ITEMS,
        json={"name": "Widget", "description": "blue", "price_cents": 1299, "quantity": 3},
        headers=user_headers,
    )
    assert response.status_code == 201
    item = response.json()
    assert item["name"] == "Widget"
    assert item["created_by"] == "alice"
    assert item["version"] == 1
    assert response.headers["location"] == f"{ITEMS}/{item['id']}"
    assert response.headers["etag"] == '"1"'


async def test_create_requires_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post(ITEMS, json={"name": "Widget", "price_cents": 1})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price_cents": 1}, "body.name"),
        ({"name": "", "price_cents": 1}, "body.name"),
        ({"name": "x" * 101, "price_cents": 1}, "body.name"),
        ({"name": "Widget", "price_cents": -1}, "body.price_cents"),
        ({"name": "Widget", "price_cents": "cheap"}, "body.price_cents"),
        ({"name": "Widget", "price_cents": 1, "quantity": -5}, "body.quantity"),
        ({"name": "Widget", "price_cents": 1, "colour": "red"}, "body.colour"),
        ({"name": "Widget", "price_cents": "12"}, "body.price_cents"),
        ({"name": "Widget", "price_cents": True}, "body.price_cents"),
        ({"name": "Widget", "price_cents": 1.5}, "body.price_cents"),
        ({"name": "Wid\u0000get", "price_cents": 1}, "body.name"),
        ({"name": "Widget", "description": "a\u0000b", "price_cents": 1}, "body.description"),
    ],
)
async def test_create_rejects_invalid_fields(
    client: httpx.AsyncClient, user_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(await client.post(ITEMS, json=body, headers=user_headers), 422)
    assert field in [error["field"] for error in problem["errors"]]


async def test_create_rejects_malformed_json(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        ITEMS,
        content=b'{"name": "Widget",',
        headers={**user_headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 422)


async def test_oversized_body_is_413(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    """The limit (APP_SERVER__MAX_BODY_BYTES, 1 MiB) holds for chunked bodies too."""
    body = json.dumps({"name": "Widget", "price_cents": 1, "description": "x" * 2**20}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    for content in (body, chunks()):
        response = await client.post(
            ITEMS, content=content, headers={**user_headers, "Content-Type": "application/json"}
        )
        assert_problem(response, 413)


async def test_duplicate_name_conflicts(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    await create(client, user_headers)
    response = await client.post(
        ITEMS, json={"name": "Widget", "price_cents": 5}, headers=user_headers
    )
    assert "already exists" in assert_problem(response, 409)["detail"]


async def test_get_returns_item_and_etag(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    response = await client.get(f"{ITEMS}/{item['id']}")
    assert response.status_code == 200
    assert response.json() == item
    assert response.headers["etag"] == '"1"'


async def test_get_revalidates_with_if_none_match(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    url = f"{ITEMS}/{item['id']}"
    unchanged = await client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    changed = await client.get(url, headers={"If-None-Match": '"7"'})
    assert changed.status_code == 200


async def test_get_unknown_item_is_404(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.get(f"{ITEMS}/999999"), 404)
    assert problem["detail"] == "item 999999 does not exist"
    assert problem["instance"] == f"{ITEMS}/999999"


@pytest.mark.parametrize("item_id", ["abc", "0", "-1", "99999999999999999999999"])
async def test_get_invalid_id_is_422(client: httpx.AsyncClient, item_id: str) -> None:
    assert_problem(await client.get(f"{ITEMS}/{item_id}"), 422)


async def test_list_paginates_with_total(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for number in range(5):
        await create(client, user_headers, name=f"Item {number}", price_cents=number * 100)
    response = await client.get(ITEMS, params={"limit": 2, "offset": 2, "sort": "name"})
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 2)
    assert [item["name"] for item in page["items"]] == ["Item 2", "Item 3"]


async def test_list_filters_and_sorts(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    await create(client, user_headers, name="Red apple", price_cents=100)
    await create(client, user_headers, name="Green apple", price_cents=300)
    await create(client, user_headers, name="Pear", price_cents=200)
    await create(client, user_headers, name="100%_apple", price_cents=50)

    async def names(**params: Any) -> list[str]:
        response = await client.get(ITEMS, params=params)
        assert response.status_code == 200
        return [item["name"] for item in response.json()["items"]]

    assert await names(q="APPLE", sort="price_cents") == ["100%_apple", "Red apple", "Green apple"]
    assert await names(min_price_cents=150, sort="-price_cents") == ["Green apple", "Pear"]
    assert await names(max_price_cents=100, sort="-name") == ["Red apple", "100%_apple"]
    # LIKE wildcards in the search term match literally.
    assert await names(q="%_") == ["100%_apple"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"sort": "password"},
        {"q": "a\x00b"},
        {"page": 2},
    ],
)
async def test_list_rejects_invalid_parameters(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    assert_problem(await client.get(ITEMS, params=params), 422)


async def test_update_changes_fields_and_version(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers, description="old")
    response = await client.patch(
        f"{ITEMS}/{item['id']}",
        json={"price_cents": 999, "description": None},
        headers={**user_headers, "If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["price_cents"], updated["description"], updated["name"]) == (
        999,
        None,
        "Widget",
    )
    assert updated["version"] == 2
    assert response.headers["etag"] == '"2"'


async def test_update_with_stale_etag_is_412(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    url = f"{ITEMS}/{item['id']}"
    first = await client.patch(
        url, json={"quantity": 1}, headers={**user_headers, "If-Match": '"1"'}
    )
    assert first.status_code == 200
    second = await client.patch(
        url, json={"quantity": 2}, headers={**user_headers, "If-Match": '"1"'}
    )
    assert "version 2" in assert_problem(second, 412)["detail"]
    assert (await client.get(url)).json()["quantity"] == 1


async def test_update_without_if_match_still_versions(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    response = await client.patch(
        f"{ITEMS}/{item['id']}", json={"quantity": 4}, headers=user_headers
    )
    assert response.json()["version"] == 2


async def test_update_rename_to_existing_name_conflicts(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    await create(client, user_headers, name="Taken")
    item = await create(client, user_headers, name="Free")
    response = await client.patch(
        f"{ITEMS}/{item['id']}", json={"name": "Taken"}, headers=user_headers
    )
    assert_problem(response, 409)


@pytest.mark.parametrize("body", [{}, {"name": None}, {"price_cents": None}, {"version": 9}])
async def test_update_rejects_invalid_bodies(
    client: httpx.AsyncClient, user_headers: dict[str, str], body: dict[str, Any]
) -> None:
    item = await create(client, user_headers)
    response = await client.patch(f"{ITEMS}/{item['id']}", json=body, headers=user_headers)
    assert_problem(response, 422)


async def test_update_requires_a_token_before_revealing_existence(
    client: httpx.AsyncClient,
) -> None:
    assert_problem(await client.patch(f"{ITEMS}/424242", json={"quantity": 1}), 401)


async def test_update_unknown_item_is_404(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.patch(f"{ITEMS}/424242", json={"quantity": 1}, headers=user_headers)
    assert_problem(response, 404)


async def test_delete_needs_admin_role(
    client: httpx.AsyncClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    url = f"{ITEMS}/{item['id']}"
    assert_problem(await client.delete(url), 401)
    forbidden = assert_problem(await client.delete(url, headers=user_headers), 403)
    assert forbidden["detail"] == "missing role: admin"
    response = await client.delete(url, headers=admin_headers)
    assert response.status_code == 204
    assert_problem(await client.get(url), 404)
    assert_problem(await client.delete(url, headers=admin_headers), 404)


async def test_delete_honours_if_match(
    client: httpx.AsyncClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    url = f"{ITEMS}/{item['id']}"
    assert_problem(await client.delete(url, headers={**admin_headers, "If-Match": '"2"'}), 412)
    assert (
        await client.delete(url, headers={**admin_headers, "If-Match": '"1"'})
    ).status_code == 204


async def test_scopes_never_grant_roles(
    client: httpx.AsyncClient, user_headers: dict[str, str], token_headers: TokenFactory
) -> None:
    """A client can ask for any scope, so a scope named like a role must not be one."""
    item = await create(client, user_headers)
    headers = token_headers("ops", extra_claims={"scope": "read admin"})
    assert_problem(await client.delete(f"{ITEMS}/{item['id']}", headers=headers), 403)


async def test_only_creator_or_admin_may_update(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    token_headers: TokenFactory,
) -> None:
    item = await create(client, user_headers)
    url = f"{ITEMS}/{item['id']}"
    stranger = await client.patch(url, json={"quantity": 9}, headers=token_headers("mallory"))
    assert "creator or an admin" in assert_problem(stranger, 403)["detail"]
    by_admin = await client.patch(url, json={"quantity": 9}, headers=admin_headers)
    assert by_admin.status_code == 200
    assert by_admin.json()["created_by"] == "alice"


async def test_delete_answers_204_without_a_body(
    client: httpx.AsyncClient, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    response = await client.delete(f"{ITEMS}/{item['id']}", headers=admin_headers)
    assert response.status_code == 204
    assert response.content == b""
    assert "content-type" not in response.headers


async def test_large_ids_are_404_not_errors(client: httpx.AsyncClient) -> None:
    """Ids beyond 32 bits still fit the 64-bit column on every backend."""
    for item_id in (2**31, 2**63 - 1):
        assert_problem(await client.get(f"{ITEMS}/{item_id}"), 404)


async def test_timestamps_equal_on_create_and_advance_on_update(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    item = await create(client, user_headers)
    assert item["created_at"] == item["updated_at"]
    assert item["created_at"].endswith("Z")
    response = await client.patch(
        f"{ITEMS}/{item['id']}", json={"quantity": 2}, headers=user_headers
    )
    updated = response.json()
    assert updated["created_at"] == item["created_at"]
    assert updated["updated_at"] > item["updated_at"]


async def test_openapi_documents_problem_json(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    problem = {"$ref": "#/components/schemas/ProblemDetail"}
    operation = document["paths"][ITEMS + "/{item_id}"]["patch"]
    for status in ("401", "403", "404", "409", "412", "422", "500"):
        content = operation["responses"][status]["content"]
        assert content == {"application/problem+json": {"schema": problem}}, status
    schemas = document["components"]["schemas"]
    assert "errors" in schemas["ProblemDetail"]["properties"]
    assert "HTTPValidationError" not in schemas
    assert "if-none-match" in [
        parameter["name"].lower()
        for parameter in document["paths"][ITEMS + "/{item_id}"]["get"]["parameters"]
    ]
