"""Tracking fixtures: the API on the real (embedded) Redis with an ad catalog of two funded
campaigns (CPM and CPC) and one slot, loaded the way a worker holds it, so ads are served by
`GET /x402/ad` and tracked through `/track/…` exactly as in production; helpers to read the
stream and the budget keys back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient

from api.ads import tokens
from api.ads.catalog import Snapshot
from api.core.settings import Settings
from api.main import create_app
from api.tracking.stream import DEFAULT_SHARDS, Keys, TrackedEvent, stream_key, stream_keys
from tests.api.conftest import SECRET

BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
PERSON_IP = "203.0.113.7"  # TEST-NET-3: in no data-centre list
CPM_ID, CPC_ID = 1_001, 1_002
CPM_BID, CPC_BID = 2_000_000, 50_000  # per 1,000 impressions; per click
CPM_PRICE = CPM_BID // 1000
LANDING = "https://shoes.example/sale?ref=buzzer"
PUBLISHER = "0x" + "ab" * 20
TOKEN = "0x" + "cd" * 20
SLOT = "slot-top"


def campaign(campaign_id: int, **overrides: Any) -> dict[str, Any]:
    """A catalog row as `api.ads.catalog.load` produces it."""
    return {
        "campaign_id": campaign_id,
        "advertiser": "0x" + "aa" * 20,
        "token": TOKEN,
        "bid_model": "cpm",
        "bid": CPM_BID,
        "format": "banner",
        "landing_url": LANDING,
        "geo": [],
        "devices": [],
        "categories": [],
        "quality_min": 0,
        "balance": 10**12,
        "max_spend": [[0, 10**15]],
        "starts_at": None,
        "ends_at": None,
        "creatives": [["bafkreibanner", "image/png", 300, 250]],
        **overrides,
    }


def catalog_data(*campaigns: dict[str, Any]) -> dict[str, Any]:
    slot = {
        "slot_id": SLOT,
        "wallet": PUBLISHER,
        "format": "banner",
        "width": 300,
        "height": 250,
        "status": "active",
        "agent_price": None,
        "ad_free_price": None,
        "no_fill_price": None,
        "category": "news",
        "pub_id": "news-example",
        "payment_wallet": PUBLISHER,
        "quality_score": 60,
        "suspended": False,
        "verified": True,
    }
    genesis = int(time.time()) // 3_600 * 3_600 - 10 * 3_600
    return {"campaigns": list(campaigns), "slots": [slot], "clock": [genesis, 3_600]}


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        storage_dir=str(tmp_path / "creatives"),
        redis_url=redis_url,
        database_url="",
        chain_id=1337,
        jwt_secret=SECRET,
        frequency_cap=10**6,
        rate_limit_ad_per_minute=0,
        min_click_ms=0,  # the too-fast test sets its own
    )


@dataclass
class Site:
    """The API with a catalog loaded, a browser at a residential address, and Redis."""

    app: Any
    browser: TestClient
    redis: redis_lib.Redis

    def load(self, *campaigns: dict[str, Any]) -> None:
        self.app.state.serving.catalog.snapshot = Snapshot.of(catalog_data(*campaigns))

    def from_ip(self, ip: str) -> TestClient:
        """A client at another address (the app is already started)."""
        return TestClient(self.app, client=(ip, 50_000), follow_redirects=False)

    def ad(self, client: TestClient | None = None) -> dict[str, Any]:
        reply = (client or self.browser).get(
            "/x402/ad",
            params={"pub_id": "news-example", "slot_id": SLOT, "format": "banner"},
            headers={"User-Agent": BROWSER},
        )
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def events(self, shard: int | None = None) -> list[TrackedEvent]:
        keys = stream_keys(DEFAULT_SHARDS) if shard is None else [stream_key(shard)]
        entries = [e for key in keys for e in self.redis.xrange(key)]
        return [TrackedEvent.parse(fields) for _, fields in entries]

    def last(self) -> TrackedEvent:
        entries = [entry for key in stream_keys(DEFAULT_SHARDS) for entry in self.redis.xrange(key)]
        _, fields = max(entries, key=lambda e: tuple(int(x) for x in e[0].split("-")))
        return TrackedEvent.parse(fields)

    def money(self, campaign_id: int) -> dict[str, int]:
        k = Keys(campaign_id, DEFAULT_SHARDS)
        return {
            "reserved": int(self.redis.get(k.reserved) or 0),
            "billed": int(self.redis.get(k.billed) or 0),
            "served": int(self.redis.zcard(k.served)),
        }


@pytest.fixture
def site(settings: Settings) -> Iterator[Site]:
    app = create_app(settings)
    with TestClient(app, client=(PERSON_IP, 50_000), follow_redirects=False) as browser:
        cache = app.state.redis
        cache.flushdb()
        result = Site(app, browser, cache)
        result.load(campaign(CPM_ID), campaign(CPC_ID, bid_model="cpc", bid=CPC_BID))
        yield result
        cache.flushdb()


def impression_token(ad: dict[str, Any]) -> str:
    return str(ad["impression_url"].split("token=", 1)[1])


def click_path(ad: dict[str, Any]) -> str:
    return "/track/click/" + str(ad["click_url"].rsplit("/", 1)[1])


def claims_of(token: str) -> dict[str, Any]:
    event = tokens.verify(SECRET, token, "imp")
    return {k: v for k, v in event.__dict__.items() if k != "kind"}


def impress(client: TestClient, token: str, user_agent: str = BROWSER) -> Any:
    return client.post(
        "/track/impression", params={"token": token}, headers={"User-Agent": user_agent}
    )
