"""The ``wallet_activity`` projection: counts and totals of each wallet's movements.

With a message broker it is the example consumer: the service publishes its events
through the outbox and reads them back from the broker, as another service would
(events/catalog.py). Without one, it reads the store like any projection.
"""

from typing import Any, ClassVar

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..events.projections import Projection
from ..events.store import RecordedEvent
from .domain import MoneyDeposited, MoneyWithdrawn, WalletOpened, Wallets
from .models import WalletActivity


class WalletActivityProjection(Projection):
    name: ClassVar[str] = "wallet_activity"
    tables: ClassVar[tuple[Table, ...]] = (WalletActivity.__table__,)  # type: ignore[assignment]

    async def apply(self, session: AsyncSession, event: RecordedEvent) -> None:
        if event.aggregate_type != Wallets.aggregate_type:
            return
        change: dict[str, Any]
        match event.decoded(Wallets.events):
            case WalletOpened():
                # merge, not add: applying an opening again (a rebuild over rows a
                # consumer wrote) starts the row again rather than failing.
                await session.merge(
                    WalletActivity(
                        wallet_id=event.aggregate_id,
                        tenant=event.tenant,
                        deposits=0,
                        withdrawals=0,
                        deposited=0,
                        withdrawn=0,
                        version=event.version,
                        last_event_at=event.recorded_at,
                    )
                )
                await session.flush()
                return
            case MoneyDeposited(amount=amount):
                change = {
                    "deposits": WalletActivity.deposits + 1,
                    "deposited": WalletActivity.deposited + amount,
                }
            case MoneyWithdrawn(amount=amount):
                change = {
                    "withdrawals": WalletActivity.withdrawals + 1,
                    "withdrawn": WalletActivity.withdrawn + amount,
                }
            case _:
                change = {}
        await session.execute(
            update(WalletActivity)
            .where(WalletActivity.wallet_id == event.aggregate_id)
            .values(**change, version=event.version, last_event_at=event.recorded_at)
        )
