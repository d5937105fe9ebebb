"""Reading and changing flag definitions, each change written to the audit log.

Every change commits the new definition and its audit entry together, then tells the
sync (``FlagSync.changed``) so this worker applies it at once and the others within a
second. A change is computed from the definition it read and written only if nobody
changed the flag since (the row's version); otherwise it is computed again on top of
the newer one. A change that changes nothing writes nothing.
"""

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ...core.errors import ConflictError, NotFoundError
from .models import Flag, FlagChange
from .schemas import FlagBody, FlagChangeRead, FlagDefinition

Notify = Callable[[], Awaitable[None]]
Change = Callable[[FlagDefinition], FlagBody]
# Attempts at a change while other writers keep getting in first; then 409.
ATTEMPTS = 5


class Update(NamedTuple):
    definition: FlagDefinition
    changed: bool


def definition_of(flag: Flag) -> FlagDefinition:
    return FlagDefinition.model_validate({**flag.definition, "key": flag.key})


def _body_json(definition: FlagBody) -> dict[str, Any]:
    # Stored without the key: the key is the row's primary key.
    return definition.model_dump(mode="json", exclude={"key"})


class FlagService:
    def __init__(self, session: AsyncSession, notify: Notify) -> None:
        self.session = session
        self.notify = notify

    async def list_all(self) -> list[FlagDefinition]:
        flags = await self.session.scalars(select(Flag).order_by(Flag.key))
        return [definition_of(flag) for flag in flags]

    async def _flag(self, key: str) -> Flag:
        # populate_existing: after a lost race (see update), read the row as the winner
        # left it, not as this session last saw it.
        flag = await self.session.get(Flag, key, populate_existing=True)
        if flag is None:
            raise NotFoundError(f"no flag {key!r}")
        return flag

    async def get(self, key: str) -> FlagDefinition:
        return definition_of(await self._flag(key))

    async def create(self, definition: FlagDefinition, actor: str) -> FlagDefinition:
        if await self.session.get(Flag, definition.key) is not None:
            raise ConflictError(f"flag {definition.key!r} exists")
        after = _body_json(definition)
        self.session.add(Flag(key=definition.key, definition=after))
        try:
            await self._commit(definition.key, actor, "create", None, after)
        except IntegrityError as exc:
            # Created by a concurrent request between the check and the commit.
            await self.session.rollback()
            raise ConflictError(f"flag {definition.key!r} exists") from exc
        return definition

    async def update(self, key: str, change: Change, actor: str) -> Update:
        """Applies ``change`` (current definition -> new body) to flag ``key``."""
        for _ in range(ATTEMPTS):
            flag = await self._flag(key)
            current = definition_of(flag)
            before, after = flag.definition, _body_json(change(current))
            if after == before:
                return Update(current, changed=False)
            flag.definition = after
            try:
                await self._commit(key, actor, "update", before, after)
            except StaleDataError:
                await self.session.rollback()
                continue
            return Update(definition_of(flag), changed=True)
        raise ConflictError(f"flag {key!r} kept changing while this change was made; retry")

    async def replace(self, key: str, body: FlagBody, actor: str) -> Update:
        return await self.update(key, lambda _current: body, actor)

    async def delete(self, key: str, actor: str) -> None:
        for _ in range(ATTEMPTS):
            flag = await self._flag(key)
            before = flag.definition
            await self.session.delete(flag)
            try:
                await self._commit(key, actor, "delete", before, None)
            except StaleDataError:
                # Changed since it was read: the audit entry must hold what was deleted.
                await self.session.rollback()
                continue
            return
        raise ConflictError(f"flag {key!r} kept changing while it was being deleted; retry")

    async def changes(self, key: str, limit: int) -> list[FlagChangeRead]:
        rows = await self.session.scalars(
            select(FlagChange)
            .where(FlagChange.flag_key == key)
            .order_by(FlagChange.id.desc())
            .limit(limit)
        )
        changes = [FlagChangeRead.model_validate(row, from_attributes=True) for row in rows]
        # Every flag's history starts with its creation and outlives its deletion, so
        # no entry at all means no such flag ever existed.
        if not changes:
            raise NotFoundError(f"no flag {key!r}")
        return changes

    async def _commit(
        self,
        key: str,
        actor: str,
        action: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        self.session.add(
            FlagChange(flag_key=key, actor=actor, action=action, before=before, after=after)
        )
        await self.session.commit()
        await self.notify()

    async def import_(self, definitions: list[FlagDefinition], actor: str) -> dict[str, str]:
        """Creates or replaces each flag, all in one transaction, each change audited as
        "import". Flags the import does not name stay as they are, and an identical one is
        not rewritten. Returns each key's outcome: created, updated or unchanged."""
        outcome: dict[str, str] = {}
        for definition in definitions:
            after = _body_json(definition)
            flag = await self.session.get(Flag, definition.key)
            before: dict[str, Any] | None = None
            if flag is None:
                self.session.add(Flag(key=definition.key, definition=after))
                outcome[definition.key] = "created"
            elif flag.definition == after:
                outcome[definition.key] = "unchanged"
                continue
            else:
                before = flag.definition
                flag.definition = after
                outcome[definition.key] = "updated"
            self.session.add(
                FlagChange(
                    flag_key=definition.key,
                    actor=actor,
                    action="import",
                    before=before,
                    after=after,
                )
            )
        try:
            await self.session.commit()
        except StaleDataError as exc:
            await self.session.rollback()
            raise ConflictError(
                "a flag of the import changed while it was imported; nothing was imported, retry"
            ) from exc
        if any(result != "unchanged" for result in outcome.values()):
            await self.notify()
        return outcome
