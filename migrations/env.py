"""Alembic environment: the URL comes from windpark's settings, not from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData, create_engine, pool

from windpark.migrate import MigrationSettings

# An explicit naming convention, so constraint names are stable across databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
target_metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _url() -> str:
    url = context.config.attributes.get("url")
    if isinstance(url, str):
        return url
    return MigrationSettings().db.dsn(driver="postgresql+psycopg")


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
