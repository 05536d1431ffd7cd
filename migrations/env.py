"""Alembic environment: the database URL comes from the caller (or DATABASE_URL); the
metadata of every model is imported so `alembic revision --autogenerate` sees all tables."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from migrations import sqlalchemy_url

config = context.config
url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL", "")
if "database_url" not in config.attributes:
    # the `alembic` command line (autogenerate) needs every model; the indexer's own
    # `upgrade` does not, and must not import the API
    import api.ads.models
    import api.campaigns.models
    import api.publishers.models
    import api.settlement.models  # noqa: F401
    import indexer.models  # noqa: F401
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
