import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple, Self, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..core.pagination import decode_cursor, encode_cursor
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
SortValue = str | int | datetime


class ItemPosition(NamedTuple):
    """Where an item stands in a list sorted by ``sort``: its sort value, then its id
    (ties go by id), what a cursor holds."""

    sort: SortKey
    value: SortValue
    id: int

    @classmethod
    def of(cls, item: "ItemRead", sort: SortKey) -> Self:
        return cls(sort, getattr(item, sort.removeprefix("-")), item.id)

    def cursor(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else str(self.value)
        return encode_cursor((self.sort, self.id), value)

    @classmethod
    def from_cursor(cls, cursor: str) -> Self:
        """ValueError for a cursor this API did not give out. Its values are checked as
        the columns hold them: a value a column cannot hold would fail in the database."""
        match decode_cursor(cursor):
            case ([str() as sort, int() as item_id], value) if sort in _SORTS and _bigint(item_id):
                key = _SORTS[sort]
                column = key.removeprefix("-")
                if column == "created_at":
                    return cls(key, _instant(value), item_id)
                if column == "price_cents":
                    return cls(key, _price(value), item_id)
                # PostgreSQL text cannot hold NUL.
                if "\x00" not in value:
                    return cls(key, value, item_id)
        raise ValueError(_NOT_OURS)


_NOT_OURS = "not a cursor this API gave out"
_SORTS: dict[str, SortKey] = {key: key for key in get_args(SortKey)}
_PRICE = re.compile(r"-?[0-9]{1,10}")


def _bigint(number: int) -> bool:
    # ids are 64-bit columns.
    return -(2**63) <= number < 2**63


def _price(text: str) -> int:
    # price_cents is a 32-bit column.
    if _PRICE.fullmatch(text) and -(2**31) <= (price := int(text)) < 2**31:
        return price
    raise ValueError(_NOT_OURS)


def _instant(text: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
        # Aware only, and in UTC's range: 0001-01-01T00:00+05:00 is before year 1 there.
        if instant.tzinfo is None:
            raise ValueError(_NOT_OURS)
        return instant.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(_NOT_OURS) from None


class ItemQuery(BaseModel):
    """List parameters; unknown query parameters are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Items to skip. A cursor finds the next page faster and more reliably.",
    )
    q: str | None = Field(
        default=None, max_length=100, pattern=NO_NUL, description="Name contains (any case)"
    )
    min_price_cents: PriceCents | None = None
    max_price_cents: PriceCents | None = None
    # A range whose minimum exceeds its maximum is valid and matches no item.
    sort: SortKey = "created_at"
    # After sort and offset: its validator reads them.
    # Base64url, and short enough that a URL with every other parameter at its longest
    # stays under the server's 2048 bytes (the longest an item gives is 574 characters).
    cursor: str | None = Field(
        default=None,
        max_length=600,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="A page's next_cursor: the items after that page, in the same sort.",
    )
    include_total: bool = Field(
        default=False, description="Count every match into total (one more query)."
    )

    @field_validator("cursor")
    @classmethod
    def _continues_this_list(cls, cursor: str | None, info: ValidationInfo) -> str | None:
        if cursor is None:
            return None
        if info.data.get("offset"):
            raise ValueError("give cursor or offset, not both")
        position = ItemPosition.from_cursor(cursor)
        sort = info.data.get("sort")
        if sort is not None and position.sort != sort:
            raise ValueError(f"this cursor continues the list sorted by {position.sort}")
        return cursor

    def after(self) -> ItemPosition | None:
        """The position the page starts after, if a cursor gave one."""
        return None if self.cursor is None else ItemPosition.from_cursor(self.cursor)


class ItemPage(BaseModel):
    items: list[ItemRead]
    next_cursor: str | None = Field(
        description="Pass as cursor for the items after these; null on the last page."
    )
    total: int | None = Field(
        description="Every match, counted when asked with include_total=true; else null."
    )
    limit: int
    offset: int
