"""Command line of the indexer. Configuration errors and unreachable services end with one
clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import psycopg

from chain.contracts import ContractsError
from chain.rpc import RpcError, RpcUnavailable
from indexer.runner import Indexer, ReorgTooDeep
from indexer.settings import ConfigError, Settings
from indexer.store import leader_lock
from migrations import upgrade
from observe import logs, metrics

log = logging.getLogger("indexer")


def _guarded(work: Callable[[Settings], Any]) -> None:
    try:
        settings = Settings.from_env()
        work(settings)
    except ReorgTooDeep as exc:
        click.echo(f"indexer halted: {exc}", err=True)
        sys.exit(3)
    except (ConfigError, ContractsError, RpcUnavailable, RpcError) as exc:
        click.echo(f"indexer: {exc}", err=True)
        sys.exit(2)
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        click.echo(f"indexer: cannot use the database: {first_line}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("indexer: stopped", err=True)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Follow Buzzer's contracts into Postgres."""
    logs.configure("indexer", level="DEBUG" if verbose else None)
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


@main.command()
@click.option("--exit-at-head", is_flag=True, help="Stop once caught up instead of following.")
def run(exit_at_head: bool) -> None:
    """Index from the start block (or the checkpoint) to the head, then follow it live."""

    def work(settings: Settings) -> None:
        indexer = Indexer(settings)
        with leader_lock(
            settings.database_url,
            indexer.chain_id,
            on_wait=lambda: log.info("another indexer leads chain %d; waiting", indexer.chain_id),
        ):
            upgrade(settings.database_url)
            if not exit_at_head:  # a catch-up that exits is not scraped
                metrics.serve("indexer")
            indexer.run(until_head=exit_at_head)

    _guarded(work)


@main.command()
@click.option("--from", "first", type=int, required=True, help="First block to re-index.")
@click.option("--to", "last", type=int, required=True, help="Last block to re-index.")
def backfill(first: int, last: int) -> None:
    """Re-index a block range (idempotent); extends the index when it goes past it."""

    def work(settings: Settings) -> None:
        indexer = Indexer(settings)
        with leader_lock(settings.database_url, indexer.chain_id):
            upgrade(settings.database_url)
            indexer.backfill(first, last)

    _guarded(work)


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    _guarded(lambda settings: upgrade(settings.database_url))
