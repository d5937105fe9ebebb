"""The README's account of the API matches what the service accepts."""

import json
import re
from pathlib import Path

import httpx
from fastapi import FastAPI

README = Path(__file__).resolve().parents[1] / "README.md"
LIST_TABLE_HEADER = "| parameter | default | accepted values |"
LIST_EXAMPLE = re.compile(r"curl 'http://127\.0\.0\.1:8000(/api/v1/items\?[^']+)'")


def list_parameter_rows() -> dict[str, tuple[str, str]]:
    """The README's table of list parameters: name -> (default, accepted values)."""
    after_header = README.read_text(encoding="utf-8").split(LIST_TABLE_HEADER, 1)[1]
    rows: dict[str, tuple[str, str]] = {}
    for line in after_header.splitlines()[2:]:
        if not line.startswith("|"):
            break
        name, default, accepted = (cell.strip() for cell in line.strip("|").split("|"))
        rows[name.strip("`")] = (default, accepted)
    return rows


async def test_readme_lists_each_list_parameter_with_its_default_and_bounds(
    app: FastAPI,
) -> None:
    operation = app.openapi()["paths"]["/api/v1/items"]["get"]
    schemas = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    rows = list_parameter_rows()
    assert rows.keys() == schemas.keys()
    for name, schema in schemas.items():
        default, accepted = rows[name]
        if "default" in schema:
            # As a URL spells it: a flag's default is false, not Python's False.
            spelled = json.dumps(schema["default"]).strip('"')
            assert default == f"`{spelled}`", name
        else:
            assert default == "none", name
        # An optional parameter's bounds sit in the non-null branch of its anyOf.
        (value_schema,) = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
        for bound in ("minimum", "maximum", "maxLength"):
            if bound in value_schema:
                assert re.search(rf"\b{value_schema[bound]}\b", accepted), (name, bound)
        for value in value_schema.get("enum", []):
            assert f"`{value.removeprefix('-')}`" in accepted, (name, value)


async def test_readme_list_example_is_accepted(client: httpx.AsyncClient) -> None:
    found = LIST_EXAMPLE.search(README.read_text(encoding="utf-8"))
    assert found, "no list example in README.md"
    response = await client.get(found.group(1))
    assert response.status_code == 200, response.text
    assert response.json()["limit"] == 10
