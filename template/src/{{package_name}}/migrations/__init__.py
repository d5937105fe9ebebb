"""Alembic migrations shipped inside the package, so an installed service can migrate."""

from pathlib import Path

from alembic import command
from alembic.config import Config

from ..core.settings import DatabaseSettings

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(settings: DatabaseSettings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option: ini values treat "%" in passwords as syntax.
    config.attributes["database_url"] = settings.url.get_secret_value()
    return config


def upgrade(settings: DatabaseSettings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings), revision)
