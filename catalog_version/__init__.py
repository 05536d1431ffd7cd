"""The ad catalog's version, shared by the indexer and the API's ad servers: after a range with
events (or a reorg) is committed, the indexer bumps `buzzer:ads:version` in Redis and the
servers reload what they serve. Without `REDIS_URL`, or with Redis down, the servers notice
within their 5-minute snapshot TTL."""

from __future__ import annotations

import logging

log = logging.getLogger("indexer")

VERSION_KEY = "buzzer:ads:version"
# what the ad servers' catalog is made of (token transfers are not)
SERVING_CONTRACTS = frozenset({"PublisherRegistry", "CampaignRegistry", "PaymentEscrow"})


class Notifier:
    def __init__(self, redis_url: str) -> None:
        self.client = None
        if redis_url:
            import redis

            self.client = redis.Redis.from_url(
                redis_url, socket_connect_timeout=0.5, socket_timeout=1.0
            )

    def changed(self) -> None:
        if self.client is None:
            return
        try:
            self.client.incr(VERSION_KEY)
        except Exception as exc:  # a missed bump costs freshness, never correctness
            log.warning("could not notify the ad servers: %s", exc)
