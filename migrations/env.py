"""Alembic environment: the database URL comes from the caller (or DATABASE_URL); the
metadata of every model is imported so `alembic revision --autogenerate` sees all tables."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import indexer.models  # noqa: F401  (registers the indexer's tables)
from indexer.migrate import sqlalchemy_url

config = context.config
url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL", "")
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
