from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from ..core.schema_types import whole_number

# PostgreSQL text cannot hold NUL characters; refuse them up front, on every backend.
NO_NUL = r"^[^\x00]*$"
# No whitespace around a name: refused rather than stripped, since stripping would let a
# 101-character value that the schema calls too long become a valid 100-character name.
# The whitespace class is spelled out: "\s" differs between Python's and pydantic's regex.
Name = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=100,
        pattern=r"^[^ \t\n\r\f\v\x00]([^\x00]*[^ \t\n\r\f\v\x00])?$",
    ),
]
Description = Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)]
# Constraints before the validator: after it, pydantic would document them as unknown
# keywords ("ge") instead of JSON Schema's "minimum", though it still enforced them.
PriceCents = Annotated[
    int,
    Field(ge=0, le=1_000_000_000, description="Price in cents"),
    BeforeValidator(whole_number),
]
Quantity = Annotated[int, Field(ge=0, le=1_000_000_000), BeforeValidator(whole_number)]


class ItemCreate(BaseModel):
    # strict: "12" or true are not prices; JSON types must match.
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    description: Description | None = None
    price_cents: PriceCents
    quantity: Quantity = 0


def _required_on_an_item(schema: dict[str, Any]) -> None:
    """The schema of a partial update: at least one field, and only ``description`` may
    be null (it can be cleared); the others may be left out but never nulled."""
    schema["minProperties"] = 1
    for name in ("name", "price_cents", "quantity"):
        field = schema["properties"][name]
        field.pop("default", None)
        (kept,) = [option for option in field.pop("anyOf") if option.get("type") != "null"]
        field.update(kept)


class ItemUpdate(BaseModel):
    """A partial update: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_required_on_an_item)

    name: Name | None = None
    description: Description | None = None
    price_cents: PriceCents | None = None
    quantity: Quantity | None = None

    @model_validator(mode="after")
    def _not_empty_or_null(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        # description may be cleared with null; the other fields are required on an item.
        nulled = {f for f in self.model_fields_set - {"description"} if getattr(self, f) is None}
        if nulled:
            raise ValueError(f"these fields cannot be null: {', '.join(sorted(nulled))}")
        return self


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


# Items per page of GET /api/v1/items (and GraphQL's items).
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

SortKey = Literal["name", "-name", "price_cents", "-price_cents", "created_at", "-created_at"]


class ItemQuery(BaseModel):
    """List parameters; unknown query parameters are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    q: str | None = Field(
        default=None, max_length=100, pattern=NO_NUL, description="Name contains (any case)"
    )
    min_price_cents: PriceCents | None = None
    max_price_cents: PriceCents | None = None
    # A range whose minimum exceeds its maximum is valid and matches no item.
    sort: SortKey = "created_at"


class ItemPage(BaseModel):
    items: list[ItemRead]
    total: int
    limit: int
    offset: int
