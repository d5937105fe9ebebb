"""The ``wallet_summaries`` projection: the wallets' read model, from their events."""

from typing import Any, ClassVar

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..events.projections import Projection
from ..events.store import RecordedEvent
from .domain import MoneyDeposited, MoneyWithdrawn, WalletClosed, WalletOpened, Wallets
from .models import WalletSummary


class WalletSummaries(Projection):
    name: ClassVar[str] = "wallet_summaries"
    tables: ClassVar[tuple[Table, ...]] = (WalletSummary.__table__,)  # type: ignore[assignment]

    async def apply(self, session: AsyncSession, event: RecordedEvent) -> None:
        if event.aggregate_type != Wallets.aggregate_type:
            return
        change: dict[str, Any]
        match event.decoded(Wallets.events):
            case WalletOpened(owner=owner, currency=currency):
                # merge, not add: applying an opening again (a rebuild over rows a
                # consumer wrote) starts the row again rather than failing.
                await session.merge(
                    WalletSummary(
                        wallet_id=event.aggregate_id,
                        tenant=event.tenant,
                        owner=owner,
                        currency=currency,
                        balance=0,
                        closed=False,
                        version=event.version,
                        changed_at=event.recorded_at,
                    )
                )
                await session.flush()
                return
            case MoneyDeposited(amount=amount):
                change = {"balance": WalletSummary.balance + amount}
            case MoneyWithdrawn(amount=amount):
                change = {"balance": WalletSummary.balance - amount}
            case WalletClosed():
                change = {"closed": True}
            case _:
                change = {}
        await session.execute(
            update(WalletSummary)
            .where(WalletSummary.wallet_id == event.aggregate_id)
            .values(**change, version=event.version, changed_at=event.recorded_at)
        )
