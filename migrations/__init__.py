"""Schema migrations (Alembic, one history for the whole project), run programmatically, and
the database URL in the forms SQLAlchemy and libpq want."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def sqlalchemy_url(database_url: str) -> str:
    """`postgres[ql][+driver]://…` as SQLAlchemy's psycopg 3 dialect wants it."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", database_url)


def libpq_url(database_url: str) -> str:
    """`postgresql+driver://…` as psycopg (libpq) wants it."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", database_url)


def alembic_config(database_url: str, ini: Path = ALEMBIC_INI) -> Config:
    config = Config(str(ini))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)
