"""Logs for every process: one JSON object per line (for the log pipeline), or coloured
`key=value` lines when a person watches the terminal.

    from observe import logs
    logs.configure("indexer")            # once, at the process's start
    log = logging.getLogger("indexer")   # the stdlib loggers stay as they are
    log.info("indexed to block %d", 42)
    # {"event": "indexed to block 42", "level": "info", "logger": "indexer",
    #  "process": "indexer", "timestamp": "2026-...Z"}

The modules keep using the stdlib `logging`; structlog formats every record at the root
handler, so libraries' records come out the same way. `extra={...}` fields become keys of
the line, and a request's id (bound by `api.core.edge` for the time of the request, with
`bound(request_id=...)`) is on every line logged while it is handled, from any module.

Settings from the environment: `LOG_LEVEL` (default INFO), `BUZZER_LOG_FORMAT` = `json` or
`console` (default: console on a terminal, JSON otherwise)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.contextvars import bind_contextvars, merge_contextvars, reset_contextvars

FORMATS = ("json", "console")
# the loggers that come with handlers of their own: their records go through ours instead
OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "granian", "alembic")


class ConfigError(ValueError):
    """A log setting cannot be used."""


def configure(
    process: str,
    *,
    level: str | None = None,
    format: str | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every log record of this process through one structlog formatter on a root
    handler writing to `stream` (stderr). Calling it again replaces the handler it set
    before (a test, a second app in one process). Returns the handler."""
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(f"LOG_LEVEL {level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    stream = stream or sys.stderr
    format = format or os.environ.get("BUZZER_LOG_FORMAT") or ""
    if not format:
        format = "console" if _is_terminal(stream) else "json"
    if format not in FORMATS:
        raise ConfigError(f"BUZZER_LOG_FORMAT {format!r} is not one of {', '.join(FORMATS)}")

    shared: list[Any] = [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _add_process(process),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_is_terminal(stream))
    handler = logging.StreamHandler(stream)
    handler.set_name("buzzer")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "buzzer"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Fields added to every line logged inside the block (in this task or thread and what
    it starts), removed after it."""
    tokens = bind_contextvars(**values)
    try:
        yield
    finally:
        reset_contextvars(**tokens)


def _add_process(process: str) -> Any:
    def add(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("process", process)
        return event

    return add


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
