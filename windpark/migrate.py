"""Runs the alembic migrations programmatically (``windpark migrate``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

from windpark.settings import DatabaseSettings, WindparkSettings

# alembic.ini and migrations/ live at the project root: beside the package in a checkout
# (editable install), or where WINDPARK_PROJECT_DIR says (the container images).
ROOT = Path(os.environ.get("WINDPARK_PROJECT_DIR") or Path(__file__).resolve().parent.parent)


class MigrationSettings(WindparkSettings):
    db: DatabaseSettings = DatabaseSettings()


def alembic_config(db: DatabaseSettings) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = db.dsn(driver="postgresql+psycopg")
    return config


@contextmanager
def _migration_log() -> Iterator[None]:
    """The migrations' own lines ("Running upgrade 0007 -> 0008") while they run; the
    `windpark` command keeps the rest of alembic at WARNING."""
    logger = logging.getLogger("alembic.runtime.migration")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


def upgrade(db: DatabaseSettings, revision: str = "head") -> None:
    with _migration_log():
        command.upgrade(alembic_config(db), revision)


def downgrade(db: DatabaseSettings, revision: str) -> None:
    with _migration_log():
        command.downgrade(alembic_config(db), revision)
