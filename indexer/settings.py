"""Indexer configuration, from the environment (and command-line overrides)."""

from __future__ import annotations

import os
from dataclasses import dataclass


class ConfigError(Exception):
    """A setting is missing or malformed."""


def _int(env: dict[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    rpc_url: str
    database_url: str
    chain_id: int | None = None
    start_block: int | None = None
    confirmations: int = 64
    reorg_window: int = 64
    poll_seconds: float = 1.0
    initial_range: int = 100
    max_range: int = 100_000
    target_logs: int = 10_000
    redis_url: str = ""
    # the x402 payment token (default: the deployment's TestUSDC, or USDC on Base) and the
    # block a newly known payment wallet's history is read from (default: the start block)
    payment_token: str = ""
    payment_start_block: int | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        database_url = env.get("DATABASE_URL", "")
        if not database_url:
            raise ConfigError("DATABASE_URL is not set (e.g. postgresql://user@host:5432/db)")
        window = _int(env, "INDEXER_REORG_WINDOW", 64) or 64
        return cls(
            rpc_url=env.get("RPC_URL") or "http://127.0.0.1:8545",
            database_url=database_url,
            chain_id=_int(env, "CHAIN_ID", None),
            start_block=_int(env, "INDEXER_START_BLOCK", None),
            confirmations=_int(env, "INDEXER_CONFIRMATIONS", window) or 0,
            reorg_window=window,
            poll_seconds=float(env.get("INDEXER_POLL_SECONDS") or 1.0),
            initial_range=_int(env, "INDEXER_INITIAL_RANGE", 100) or 100,
            max_range=_int(env, "INDEXER_MAX_RANGE", 100_000) or 100_000,
            target_logs=_int(env, "INDEXER_TARGET_LOGS", 10_000) or 10_000,
            redis_url=env.get("REDIS_URL", ""),
            payment_token=env.get("PAYMENT_TOKEN", ""),
            payment_start_block=_int(env, "INDEXER_PAYMENT_START_BLOCK", None),
        )
