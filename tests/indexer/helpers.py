"""Running the indexer from tests: in-process to the head, or as the real CLI process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from indexer.runner import Indexer
from indexer.settings import Settings
from indexer.store import Checkpoint
from migrations import upgrade
from tests.support.tables import snapshot

ROOT = Path(__file__).resolve().parents[2]
RAW_AND_CHECKPOINT = ("alembic_version", "indexer_checkpoints", "indexed_blocks")


def settings(rpc_url: str, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rpc_url": rpc_url,
        "database_url": database_url,
        "confirmations": 0,
        "poll_seconds": 0.05,
        "initial_range": 50,
    }
    values.update(overrides)
    return Settings(**values)


def index_to_head(rpc_url: str, database_url: str, **overrides: Any) -> Checkpoint:
    """Index everything up to the current head, in this process."""
    upgrade(database_url)
    indexer = Indexer(settings(rpc_url, database_url, **overrides))
    try:
        return indexer.run(until_head=True)
    finally:
        indexer.close()


def cli_env(rpc_url: str, database_url: str, deployments_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "RPC_URL": rpc_url,
        "DATABASE_URL": database_url,
        "BUZZER_DEPLOYMENTS_DIR": str(deployments_dir),
        "INDEXER_CONFIRMATIONS": "0",
        "INDEXER_POLL_SECONDS": "0.05",
    }
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "indexer", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "indexer", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def projections(database_url: str) -> dict[str, list[Any]]:
    """Every projection table (and the canonical raw events), comparable across databases."""
    tables = snapshot(database_url, exclude=RAW_AND_CHECKPOINT)
    tables["chain_events"] = [row for row in tables.get("chain_events", []) if row[-1] is True]
    return tables


def core_logs(chain: Any) -> list[Any]:
    """The deployment's logs the indexer stores in full: every contract's but the payment
    token's (that one is read by payment wallet)."""
    return [log for log in chain.logs() if log.contract != "TestUSDC"]


def core_event_count(database_url: str) -> int:
    """Canonical stored events of every contract but the payment token."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM chain_events WHERE canonical AND contract <> 'PaymentToken'"
        ).fetchone()
    return int(row[0]) if row else 0
