"""Committed item changes, announced to whoever listens in this process.

The item service announces each create, update and delete once its transaction has
committed; listeners (the GraphQL subscriptions) learn of changes made through any API
without the service knowing who they are. A listener is called on the event loop and must
not block: it hands the change on (to a queue, to Redis) and returns.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from fastapi import FastAPI

logger = structlog.stdlib.get_logger(__name__)

ChangeKind = Literal["created", "updated", "deleted"]


@dataclass(frozen=True, slots=True)
class ItemChange:
    kind: ChangeKind
    item_id: int
    # The version the change produced (a deleted item's last one).
    version: int
    # Whose item it is, with tenants: listeners hand each tenant its own changes only.
    tenant: str | None = None


ItemChangeListener = Callable[[ItemChange], None]


class ItemChanges:
    def __init__(self) -> None:
        self._listeners: list[ItemChangeListener] = []

    def listen(self, listener: ItemChangeListener) -> Callable[[], None]:
        """Calls ``listener`` with every change from now on; returns what stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def announce(self, change: ItemChange) -> None:
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:
                # The write has committed: a listener's fault must not fail the request.
                logger.exception("item change not announced", change=change)


def item_changes(app: FastAPI) -> ItemChanges:
    """The application's announcer, made on first use."""
    changes: ItemChanges | None = getattr(app.state, "item_changes", None)
    if changes is None:
        changes = app.state.item_changes = ItemChanges()
    return changes
