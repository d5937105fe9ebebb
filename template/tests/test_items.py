"""The items API end to end: every endpoint, its validation and its error paths."""

import base64
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


async def test_list_counts_only_when_asked(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for number in range(5):
        await create(client, user_headers, name=f"Item {number}", price_cents=number * 100)
    params: dict[str, Any] = {"limit": 2, "offset": 2, "sort": "name"}
    response = await client.get(ITEMS, params={**params, "include_total": "true"})
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 5
    assert (page["limit"], page["offset"]) == (2, 2)
    assert [item["name"] for item in page["items"]] == ["Item 2", "Item 3"]
    assert page["next_cursor"] is not None

    uncounted = (await client.get(ITEMS, params=params)).json()
    assert uncounted["total"] is None
    assert uncounted["items"] == page["items"]
    last = (await client.get(ITEMS, params={**params, "offset": 3})).json()
    assert [item["name"] for item in last["items"]] == ["Item 3", "Item 4"]
    assert last["next_cursor"] is None


async def _walk(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """The names on every page, following next_cursor from the first page."""
    names: list[str] = []
    cursor = None
    while True:
        query = params if cursor is None else {**params, "cursor": cursor}
        response = await client.get(ITEMS, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        names += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return names
        # A cursor's page never ends the list early: one that is full announces more.
        assert len(page["items"]) == params["limit"]


@pytest.mark.parametrize(
    "sort", ["name", "-name", "price_cents", "-price_cents", "created_at", "-created_at"]
)
async def test_cursors_walk_the_whole_list_in_order(
    client: httpx.AsyncClient, user_headers: dict[str, str], sort: str
) -> None:
    # Equal prices: ties go by id, across page boundaries too.
    for number, price in enumerate([300, 100, 300, 200, 300, 100, 0]):
        await create(client, user_headers, name=f"Item {number}", price_cents=price)
    response = await client.get(ITEMS, params={"sort": sort, "limit": 100})
    everything = [item["name"] for item in response.json()["items"]]
    assert len(everything) == 7

    assert await _walk(client, sort=sort, limit=2) == everything
    assert await _walk(client, sort=sort, limit=3, min_price_cents=100) == [
        name for name in everything if name != "Item 6"
    ]


async def test_a_cursor_keeps_its_place_when_earlier_items_come_and_go(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for name in ("b", "c", "d", "e"):
        await create(client, user_headers, name=name, price_cents=1)
    first = (await client.get(ITEMS, params={"sort": "name", "limit": 2})).json()
    assert [item["name"] for item in first["items"]] == ["b", "c"]
    # An offset would now show "c" again; the cursor continues after "c".
    await create(client, user_headers, name="a", price_cents=1)
    after = {"sort": "name", "limit": 2, "cursor": first["next_cursor"]}
    second = (await client.get(ITEMS, params=after)).json()
    assert [item["name"] for item in second["items"]] == ["d", "e"]
    assert second["offset"] == 0


@pytest.mark.parametrize(
    "character",
    [
        # Four UTF-8 bytes each: the longest cursor an item can give.
        "\U0001f600",
        # Control characters, which JSON would spell in six bytes each.
        "\x01",
    ],
)
async def test_the_longest_names_give_cursors_the_list_takes(
    client: httpx.AsyncClient, user_headers: dict[str, str], character: str
) -> None:
    longest, shorter = "a" + character * 99, "a" + character * 98
    for name in (shorter, longest):
        await create(client, user_headers, name=name, price_cents=1)
    assert await _walk(client, sort="name", limit=1) == [shorter, longest]
    assert await _walk(client, sort="-name", limit=1) == [longest, shorter]


def _forged(sort: object, item_id: object, value: str) -> str:
    text = json.dumps([sort, item_id]) + "\n" + value
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


async def test_list_refuses_cursors_it_did_not_give_out(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    for number in range(3):
        await create(client, user_headers, name=f"Item {number}", price_cents=number)
    cursor = (await client.get(ITEMS, params={"limit": 1, "sort": "name"})).json()["next_cursor"]
    lone_surrogate = base64.urlsafe_b64encode(b'["name",1]\n\xed\xa0\x80').decode()
    refused = [
        {"cursor": cursor, "sort": "price_cents"},
        {"cursor": cursor, "sort": "name", "offset": 1},
        {"cursor": "forged"},
        {"cursor": "x" * 601},
        {"cursor": "abc=="},
        {"cursor": base64.urlsafe_b64encode(b"[" * 400).decode()},
        {"cursor": _forged("created_at", 1, "2026-01-01T00:00:00")},
        {"cursor": _forged("created_at", 1, "0001-01-01T00:00:00+05:00")},
        # price_cents is a 32-bit column: a larger number would fail in PostgreSQL.
        {"cursor": _forged("price_cents", 1, str(2**31)), "sort": "price_cents"},
        {"cursor": _forged("price_cents", 1, "1.5"), "sort": "price_cents"},
        {"cursor": _forged("name", 1, "a\x00"), "sort": "name"},
        {"cursor": lone_surrogate, "sort": "name"},
        {"cursor": _forged("name", True, "Item 0"), "sort": "name"},
        {"cursor": _forged("name", 2**63, "Item 0"), "sort": "name"},
        {"cursor": _forged("password", 1, "x")},
    ]
    for params in refused:
        problem = assert_problem(await client.get(ITEMS, params=params), 422)
        assert [error["field"] for error in problem["errors"]] == ["query.cursor"], params
    # The cursor itself continues its own sort.
    page = (await client.get(ITEMS, params={"cursor": cursor, "sort": "name"})).json()
    assert [item["name"] for item in page["items"]] == ["Item 1", "Item 2"]


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
