"""What the wallet API reads and writes."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Minor units (cents); a trillion of them is far beyond any one movement.
Amount = Annotated[int, Field(gt=0, le=10**12, description="Amount in minor units (cents)")]
Reference = Annotated[str | None, Field(default=None, min_length=1, max_length=200)]


class WalletCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(pattern="^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")


class Movement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Amount
    reference: Reference = None


class WalletRead(BaseModel):
    id: str
    owner: str
    currency: str
    balance: int
    closed: bool
    # The number of events the wallet had at this state; its ETag.
    version: int
    created_at: datetime
    changed_at: datetime


class WalletSummaryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(validation_alias="wallet_id")
    owner: str
    currency: str
    balance: int
    closed: bool
    version: int
    changed_at: datetime


class WalletSummaryPage(BaseModel):
    items: list[WalletSummaryRead]
    # Pass as ``after`` for the next page; absent on the last one.
    next_after: str | None = None


class WalletEventRead(BaseModel):
    """One entry of a wallet's history: who did what, when."""

    version: int
    type: str
    data: dict[str, Any]
    actor: str | None
    recorded_at: datetime
    # The event's place in the store's global order.
    position: int
