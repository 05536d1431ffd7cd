"""The session stack answers as a deployment would: the API is up on its own URL and hands
out URLs on it, it sees the chain's deployment through the indexer, uvicorn leaves the
client's address to the API, and Redis keeps what it acknowledged across a clean restart."""

from __future__ import annotations

import signal

import httpx
import redis

from tests.api.conftest import Wallet
from tests.support.chain import dev_account
from tests.support.stack import Stack

PUBLISHER = 21


def sign_in(api: httpx.Client, wallet: Wallet, stack: Stack) -> dict[str, str]:
    nonce = api.get("/api/v1/auth/nonce").json()["nonce"]
    message = wallet.message(nonce, domain=stack.settings.siwe_domain, uri=stack.api_url)
    reply = api.post(
        "/api/v1/auth/verify", json={"message": message, "signature": wallet.sign(message)}
    )
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def test_the_api_answers_and_follows_the_chain(stack):
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        assert api.get("/healthz").json() == {"status": "ok"}
        assert api.get("/readyz").json()["status"] == "ready"

        wallet = Wallet(dev_account(PUBLISHER))
        headers = sign_in(api, wallet, stack)
        created = api.post(
            "/api/v1/publishers", json={"website_url": "https://stack.example"}, headers=headers
        )
        assert created.status_code == 201, created.text
        tx = api.post(
            "/api/v1/publishers/me/registration-tx", json={"pub_id": "stack-site"}, headers=headers
        ).json()
        assert tx["to"].lower() == stack.deployment["contracts"]["PublisherRegistry"].lower()
        stack.anvil.call(
            "eth_sendTransaction", {"from": wallet.address, "to": tx["to"], "data": tx["data"]}
        )
        stack.index()
        profile = api.get("/api/v1/publishers/me", headers=headers).json()
        assert profile["onchain"]["registered"] is True
        assert profile["onchain"]["pub_id"] == "stack-site"

        slot = api.post(
            "/api/v1/publishers/me/slots",
            json={"name": "Top", "format": "banner", "width": 300, "height": 250},
            headers=headers,
        ).json()
        code = api.get(
            f"/api/v1/publishers/me/slots/{slot['slot_id']}/integration", headers=headers
        )
        assert code.status_code == 200


def test_uvicorn_leaves_the_client_address_to_the_api(stack):
    # a local client's X-Forwarded-For is not believed: one client, one rate-limit bucket
    # (counted in a Redis database of this test's own, so the shared API's count is not in it)
    own_db = f"{stack.redis_url}?db=1"
    with redis.Redis.from_url(own_db) as cache:
        cache.flushdb()
    with (
        stack.another_api(BUZZER_RATE_LIMIT_AUTH_PER_MINUTE="2", REDIS_URL=own_db) as url,
        httpx.Client(base_url=url) as api,
    ):
        statuses = [
            api.get("/api/v1/auth/nonce", headers={"X-Forwarded-For": f"203.0.{n}.1"}).status_code
            for n in range(3)
        ]
    assert statuses == [200, 200, 429]


def test_redis_keeps_acknowledged_writes_across_a_clean_restart(stack):
    with stack.cache() as cache:
        assert cache.config_get("appendonly") == {"appendonly": "yes"}
        assert cache.config_get("appendfsync") == {"appendfsync": "everysec"}
        cache.xadd("buzzer:{stack-test}:events", {"n": "1"})
    stack.restart_redis(signal.SIGTERM)
    with stack.cache() as cache:
        assert cache.xlen("buzzer:{stack-test}:events") == 1
        cache.delete("buzzer:{stack-test}:events")
    with httpx.Client(base_url=stack.api_url) as api:
        assert api.get("/readyz").json()["checks"]["redis"] == "ok"
