"""The wallets' read model: one row per wallet, kept by the ``wallet_summaries``
projection (projection.py). The events are the truth; this table can be rebuilt."""

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..core.database import Base, BigId


class WalletSummary(Base):
    __tablename__ = "wallet_summaries"
    # The list: one owner's wallets (within a tenant), by id.
    __table_args__ = (Index("ix_wallet_summaries_owner", "tenant", "owner", "wallet_id"),)

    wallet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(256))
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[int] = mapped_column(BigId)
    closed: Mapped[bool]
    # The last event applied, so a reader can tell how fresh the row is.
    version: Mapped[int]
    changed_at: Mapped[datetime]


class WalletActivity(Base):
    """Each wallet's movements in totals, kept by the ``wallet_activity`` projection:
    fed from the broker when the service has one (the example consumer), else from
    the store like ``wallet_summaries``."""

    __tablename__ = "wallet_activity"

    wallet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str | None] = mapped_column(String(64))
    deposits: Mapped[int]
    withdrawals: Mapped[int]
    deposited: Mapped[int] = mapped_column(BigId)
    withdrawn: Mapped[int] = mapped_column(BigId)
    # The last event applied: a consumer fed in order sees it rise by one each time.
    version: Mapped[int]
    last_event_at: Mapped[datetime]
