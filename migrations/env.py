"""Alembic environment: the database URL comes from the caller (or DATABASE_URL); the
metadata of every model is imported so `alembic revision --autogenerate` sees all tables."""

from __future__ import annotations

import os
import re
from typing import Any

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
    import api.analytics.models
    import api.campaigns.models
    import api.publishers.models
    import api.settlement.models
    import api.tracking.models  # noqa: F401
    import indexer.models  # noqa: F401
target_metadata = SQLModel.metadata

# day partitions of the event tables (`ad_events_p20261206`): made by the scheduler and the
# writer as days come, not by a migration, so no model describes them
PARTITION = re.compile(r"_p\d{8}$")


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if not reflected:
        return True
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not (table and PARTITION.search(table))


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, include_object=include_object
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
