"""Rate limits in Redis: a counter per client and minute; past the limit, 429 with
`Retry-After`. If Redis cannot be reached the request goes through (and is logged): a
limiter must not take the API down with it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from fastapi import Request

from api.core.clientip import client_ip
from api.core.errors import TooManyRequests

log = logging.getLogger("api.ratelimit")
WINDOW = 60


def hit(cache: redis.Redis, bucket: str, who: str, limit: int) -> None:
    """Count one request of `who` in `bucket`; raise 429 past `limit` per minute."""
    now = int(time.time())
    window = now - now % WINDOW
    key = f"rl:{bucket}:{who}:{window}"
    try:
        with cache.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW + 5)
            count = int(pipe.execute()[0])
    except redis.RedisError as exc:
        log.warning("rate limiter unavailable (%s); letting the request through", exc)
        return
    if count > limit:
        retry_after = window + WINDOW - now
        raise TooManyRequests(
            f"too many requests; try again in {retry_after} s",
            {"limit_per_minute": limit},
            headers={"Retry-After": str(retry_after)},
        )


def per_ip(bucket: str, limit_of: Callable[[Request], int]) -> Callable[[Request], None]:
    """A dependency limiting each client IP to `limit_of(request)` requests a minute."""

    def dependency(request: Request) -> None:
        who = client_ip(request, request.app.state.settings)
        hit(request.app.state.redis, bucket, who, limit_of(request))

    return dependency


class LocalLimiter:
    """The same per-minute limit, counted in this process only: for the ad endpoint, whose
    every request cannot afford a Redis round trip. With several workers a client gets up
    to `limit` × workers, still a hard bound on a burst."""

    def __init__(self, limit_of: Callable[[], int], max_clients: int = 100_000) -> None:
        self.limit_of = limit_of
        self.max_clients = max_clients
        self.window = 0
        self.counts: dict[str, int] = {}

    def hit(self, who: str) -> None:
        limit = self.limit_of()
        if limit <= 0:
            return
        now = int(time.time())
        window = now - now % WINDOW
        if window != self.window or len(self.counts) >= self.max_clients:
            self.window, self.counts = window, {}
        count = self.counts.get(who, 0) + 1
        self.counts[who] = count
        if count > limit:
            retry_after = window + WINDOW - now
            raise TooManyRequests(
                f"too many requests; try again in {retry_after} s",
                {"limit_per_minute": limit},
                headers={"Retry-After": str(retry_after)},
            )
