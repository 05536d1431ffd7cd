"""Analytics fixtures: a migrated database with events written straight into `ad_events`
(day partitions made here, as the writer would), the app on it, and signed-in wallets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.core.db import make_engine
from api.core.settings import Settings
from api.main import create_app
from migrations import upgrade
from tests.api.conftest import (  # noqa: F401 (fixtures used by name)
    Wallet,
    auth,
    settings,
)
from tests.support.fixtures import database_url  # noqa: F401


@dataclass
class Event:
    occurred_at: datetime
    kind: str = "impression"
    verified: bool = True
    reason: str | None = None
    campaign_id: int | None = 1
    publisher: str | None = "0x" + "a" * 40
    slot_id: str | None = "slot-a"
    price: int = 0
    chain_id: int = 1337


def ensure_partitions(engine: Engine, start: datetime, end: datetime) -> None:
    """Day partitions of `ad_events` covering [start, end]."""
    day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        while day <= end:
            nxt = day + timedelta(days=1)
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS ad_events_p{day:%Y%m%d} PARTITION OF ad_events"
                    f" FOR VALUES FROM ('{day.isoformat()}') TO ('{nxt.isoformat()}')"
                )
            )
            day = nxt


def insert_events(engine: Engine, events: list[Event]) -> None:
    if not events:
        return
    ensure_partitions(
        engine, min(e.occurred_at for e in events), max(e.occurred_at for e in events)
    )
    rows: list[dict[str, Any]] = [
        {
            **vars(e),
            "event_id": f"{uuid.uuid4().hex}-0",
            "serve_id": uuid.uuid4().hex,
            "bid_model": "cpm",
        }
        for e in events
    ]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ad_events (event_id, occurred_at, kind, verified, reason, chain_id,"
                " serve_id, campaign_id, slot_id, publisher, bid_model, price) VALUES"
                " (:event_id, :occurred_at, :kind, :verified, :reason, :chain_id, :serve_id,"
                " :campaign_id, :slot_id, :publisher, :bid_model, :price)"
            ),
            rows,
        )


def insert_payment(
    engine: Engine, at: datetime, slot_id: str, pay_to: str, amount: int, state: str = "settled"
) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO x402_payments (id, chain_id, payer, nonce, payload_hash, slot_key,"
                " pay_to, asset, amount, authorization_expires_at, state, created_at, updated_at)"
                " VALUES (:id, 1337, :payer, :nonce, 'h', :slot_key, :pay_to, '0xusdc', :amount,"
                " :at, :state, :at, :at)"
            ),
            {
                "id": uuid.uuid4(),
                "payer": "0x" + "b" * 40,
                "nonce": "0x" + uuid.uuid4().hex * 2,
                "slot_key": f"{slot_id}:agent",
                "pay_to": pay_to,
                "amount": amount,
                "at": at,
                "state": state,
            },
        )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    found = make_engine(database_url)
    yield found
    found.dispose()


@pytest.fixture
def admin() -> Wallet:
    return Wallet()


@pytest.fixture
def client(
    settings: Settings,
    engine: Engine,
    database_url: str,
    admin: Wallet,
) -> Iterator[TestClient]:
    live = settings.model_copy(
        update={
            "database_url": database_url,
            "analytics_admin_wallets": [admin.address],
            "rate_limit_wallet_per_minute": 100_000,
        }
    )
    with TestClient(create_app(live)) as test_client:
        test_client.app.state.redis.flushdb()
        yield test_client


def register_campaign(engine: Engine, campaign_id: int, advertiser: str) -> None:
    """An on-chain campaign as the indexer records it."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaigns_onchain (chain_id, campaign_id, advertiser, token,"
                " bid_model, bid, metadata_hash, status, max_spend_per_epoch,"
                " max_spend_effective_epoch, previous_max_spend_per_epoch, registered_block)"
                " VALUES (1337, :id, :advertiser, '0xusdc', 0, 1000, '0x00', 1, 10, 0, 10, 1)"
            ),
            {"id": campaign_id, "advertiser": advertiser.lower()},
        )
