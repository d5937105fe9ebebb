"""What every resolver of one operation shares: the caller and the loaders.

Built by the router for each HTTP request, and for each WebSocket connection (whose
caller is who authenticated at ``connection_init``). Each resolver opens a session of its
own and closes it before returning: graphql-core resolves a query's fields concurrently,
which one session cannot serve, and a subscription's connection lives for hours and
must not hold a database connection between events.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader

from ..core.auth.principal import Principal
from ..items.dependencies import service_for
from ..items.models import Item
from ..items.service import ItemService

# Sessions one operation (or one WebSocket connection) holds at once. graphql-core runs
# sibling fields concurrently: without a bound, a query of 15 aliased fields would ask
# for 15 of the pool's connections at once and starve every other request.
SESSIONS_AT_ONCE = 4

# With tenants (the tenancy slice): the tenant the connection acts for, given whether its
# caller authenticated, or a ProblemError (401, 403) when it names none, as REST answers.
TenantCheck = Callable[[HTTPConnection, bool], str]


class GraphQLContext:
    def __init__(
        self,
        connection: HTTPConnection,
        principal: Principal | None,
        tenant_check: TenantCheck | None = None,
    ) -> None:
        self.connection = connection
        self.principal = principal
        self._tenant_check = tenant_check
        self._sessions_at_once = asyncio.Semaphore(SESSIONS_AT_ONCE)
        # A WebSocket client's connection_init payload (its token), set by Strawberry.
        self.connection_params: dict[str, object] = {}
        # Batches one operation's lookups: N items asking for their creator's count make
        # one query, not N. Not cached between batches: counts change, and a WebSocket
        # connection's context lives as long as it does.
        self.item_counts = DataLoader(load_fn=self._item_counts, cache=False)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = self.connection.app.state.sessions
        return sessions

    def tenant(self) -> str | None:
        """The tenant the operation acts for; None without tenants. Raises a ProblemError
        (coded UNAUTHENTICATED or FORBIDDEN) when tenants are on and it names none."""
        if self._tenant_check is None:
            return None
        return self._tenant_check(self.connection, self.principal is not None)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session of this operation's few, closed when the block ends."""
        # Below the check, the session would be bound to no tenant and read nothing.
        self.tenant()
        async with self._sessions_at_once, self.sessions() as session:
            yield session

    @asynccontextmanager
    async def items(self) -> AsyncIterator[ItemService]:
        """The item service REST uses, on a session closed when the block ends."""
        async with self.session() as session:
            yield service_for(self.connection.app, session)

    async def _item_counts(self, subjects: Sequence[str]) -> list[int]:
        async with self.session() as session:
            rows = await session.execute(
                select(Item.created_by, func.count())
                .where(Item.created_by.in_(set(subjects)))
                .group_by(Item.created_by)
            )
            counts: dict[str, int] = dict(rows.all())
        return [counts.get(subject, 0) for subject in subjects]
