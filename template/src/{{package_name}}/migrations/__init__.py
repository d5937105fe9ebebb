"""Alembic migrations shipped inside the package, so an installed service can migrate."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection

from ..core.database import one_connection
from ..core.settings import DatabaseSettings

MIGRATIONS_DIR = Path(__file__).parent


class UnknownRevisionsError(Exception):
    """The database is at revisions these migrations do not contain (``revisions``);
    ``known`` are the database's other revisions, which they do contain, and ``heads``
    the latest revisions they contain."""

    def __init__(
        self, revisions: Sequence[str], known: Sequence[str], heads: Sequence[str]
    ) -> None:
        self.revisions = tuple(revisions)
        self.known = tuple(known)
        self.heads = tuple(heads)
        super().__init__(
            f"the database is at revision {', '.join(self.revisions)}, "
            "which this service's migrations do not contain"
        )


@dataclass(frozen=True)
class UpgradeOutcome:
    """Where an upgrade left the database: its ``revisions`` (none if never migrated), the
    migrations' ``heads``, and whether the target was already below the database's
    revisions (``target_passed``), in which case the upgrade did nothing."""

    revisions: tuple[str, ...]
    heads: tuple[str, ...]
    target_passed: bool


# The service's own revisions continue this branch; every optional feature's tables have
# a branch of their own (a folder under versions/), so switching a feature on or off with
# `copier update` never reorders or breaks the service's revisions.
SERVICE_BRANCH = "service"


def alembic_config(settings: DatabaseSettings) -> Config:
    """The configuration ``migrate`` and the tests use; alembic.ini says the same for
    developers running ``alembic`` from the project root."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("recursive_version_locations", "true")
    config.set_main_option("revision_environment", "true")
    # Passed as an attribute, not an ini option: ini values treat "%" in passwords as syntax.
    config.attributes["database_url"] = settings.url.get_secret_value()
    return config


def _current_heads(connection: Connection, version_table_schema: str | None) -> tuple[str, ...]:
    context = MigrationContext.configure(
        connection, opts={"version_table_schema": version_table_schema}
    )
    # Sorted: with a branch per feature there are several, in no order of their own.
    return tuple(sorted(context.get_current_heads()))


async def _read_revisions(url: str, version_table_schema: str | None) -> tuple[str, ...]:
    async with one_connection(url) as connection:
        return await connection.run_sync(_current_heads, version_table_schema)


def database_revisions(
    settings: DatabaseSettings, version_table_schema: str | None = None
) -> tuple[str, ...]:
    """The revisions the database's ``alembic_version`` table holds (the one in
    ``version_table_schema``, if named); none for a new one."""
    return asyncio.run(_read_revisions(settings.url.get_secret_value(), version_table_schema))


def recorded_heads(scripts: ScriptDirectory) -> tuple[str, ...]:
    """What ``alembic_version`` holds once every branch is at its head: the heads, less
    those another head depends on (``depends_on``), which Alembic does not record apart."""
    heads = set(scripts.get_heads())
    below = {
        script.revision
        for head in heads
        for script in scripts.iterate_revisions(head, "base")
        if script.revision != head
    }
    return tuple(sorted(heads - below))


def ensure_known_revisions(scripts: ScriptDirectory, revisions: Sequence[str]) -> None:
    """Raise ``UnknownRevisionsError`` for revisions the migrations lack, which Alembic
    would otherwise report as a bare "Can't locate revision" traceback."""
    contained = {script.revision for script in scripts.walk_revisions()}
    unknown = [revision for revision in revisions if revision not in contained]
    if unknown:
        known = [revision for revision in revisions if revision in contained]
        raise UnknownRevisionsError(unknown, known, recorded_heads(scripts))


def _is_passed(scripts: ScriptDirectory, target: str, revisions: Sequence[str]) -> bool:
    """Whether ``target`` lies below the database's ``revisions``: Alembic's upgrade then
    does nothing, silently."""
    try:
        wanted = {script.revision for script in scripts.get_revisions(target) if script}
    except CommandError:
        # Relative targets ("+1", "head-1") resolve only against the database, and the
        # upgrade has just accepted this one: it was not below the database.
        return False
    below = {
        script.revision
        for revision in revisions
        for script in scripts.iterate_revisions(revision, "base")
        if script.revision != revision
    }
    # "base" resolves to no revision: below anything the database is at.
    return bool(revisions) and wanted <= below - set(revisions)


def upgrade(settings: DatabaseSettings, revision: str = "heads") -> UpgradeOutcome:
    """Apply the migrations up to ``revision`` (by default the head of every branch). Only
    upgrades: a target below the database's revisions changes nothing
    (``UpgradeOutcome.target_passed``)."""
    config = alembic_config(settings)
    scripts = ScriptDirectory.from_config(config)
    ensure_known_revisions(scripts, database_revisions(settings))
    command.upgrade(config, revision)
    revisions = database_revisions(settings)
    return UpgradeOutcome(
        revisions=revisions,
        heads=recorded_heads(scripts),
        target_passed=_is_passed(scripts, revision, revisions),
    )
