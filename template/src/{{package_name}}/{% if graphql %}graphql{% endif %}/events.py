"""Item changes fanned out to the GraphQL subscriptions of this process.

Each subscription has a bounded queue. A subscriber that reads more slowly than changes
arrive is not buffered without end, nor allowed to slow the others: when its queue is
full, its subscription ends with the error code ``SLOW_CONSUMER`` (the client
resubscribes and reads the current state). Publishing never waits.
"""

import asyncio
from collections.abc import AsyncIterator

from graphql import GraphQLError

from ..items.changes import ItemChange
from .observer import GraphQLObserver, QuietObserver


class SlowConsumerError(GraphQLError):
    def __init__(self, buffer: int) -> None:
        super().__init__(
            f"more than {buffer} changes waited for this subscription; subscribe again",
            extensions={"code": "SLOW_CONSUMER"},
        )


class _Subscription:
    def __init__(self, buffer: int) -> None:
        self.queue: asyncio.Queue[ItemChange] = asyncio.Queue(buffer)
        self.overflowed = asyncio.Event()


class ItemEvents:
    def __init__(self, buffer: int, observer: GraphQLObserver | None = None) -> None:
        self._buffer = buffer
        self._subscriptions: set[_Subscription] = set()
        self._observer = observer or QuietObserver()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def deliver(self, change: ItemChange) -> None:
        for subscription in self._subscriptions:
            if subscription.overflowed.is_set():
                continue
            try:
                subscription.queue.put_nowait(change)
            except asyncio.QueueFull:
                subscription.overflowed.set()
                self._observer.slow_consumer()

    async def changes(self) -> AsyncIterator[ItemChange]:
        """Every change delivered from now until the caller stops iterating."""
        subscription = _Subscription(self._buffer)
        self._subscriptions.add(subscription)
        self._observer.subscriptions(+1)
        overflowed = asyncio.ensure_future(subscription.overflowed.wait())
        try:
            while True:
                if subscription.queue.empty():
                    received = asyncio.ensure_future(subscription.queue.get())
                    await asyncio.wait((received, overflowed), return_when=asyncio.FIRST_COMPLETED)
                    if not received.done():
                        received.cancel()
                        raise SlowConsumerError(self._buffer)
                    change = received.result()
                elif subscription.overflowed.is_set():
                    raise SlowConsumerError(self._buffer)
                else:
                    change = subscription.queue.get_nowait()
                yield change
        finally:
            overflowed.cancel()
            self._subscriptions.discard(subscription)
            self._observer.subscriptions(-1)
