"""Bursts are answered 429 with `Retry-After`, in the error shape; other clients are not
affected; an unreachable Redis never makes the limiter refuse or crash."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from api.core.ratelimit import hit
from api.core.redis import FAST_FAIL
from api.main import create_app
from tests.api.conftest import Wallet, auth


def test_a_burst_on_the_nonce_route_is_limited(settings):
    limited = settings.model_copy(update={"rate_limit_auth_per_minute": 5})
    with TestClient(create_app(limited)) as client:
        client.app.state.redis.flushdb()
        statuses = [client.get("/api/v1/auth/nonce").status_code for _ in range(8)]
        refused = client.get("/api/v1/auth/nonce")

    assert statuses == [200] * 5 + [429] * 3
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60


def test_the_limit_is_per_client(settings):
    limited = settings.model_copy(update={"rate_limit_auth_per_minute": 2})
    with TestClient(create_app(limited)) as client:
        client.app.state.redis.flushdb()
        for _ in range(3):
            client.get("/api/v1/auth/nonce")
    with TestClient(create_app(limited), client=("10.0.0.7", 5000)) as other:
        assert other.get("/api/v1/auth/nonce").status_code == 200


def test_without_redis_the_limiter_lets_requests_through():
    unreachable = redis.Redis(unix_socket_path="/nonexistent/redis.sock", **FAST_FAIL)
    for _ in range(5):
        hit(unreachable, "auth", "10.0.0.1", limit=1)  # no 429, no crash


def test_each_wallet_has_its_own_budget(api, wallet):
    api.app.state.settings.rate_limit_wallet_per_minute = 3
    mine = auth(api, wallet)
    theirs = auth(api, Wallet())
    statuses = [api.get("/api/v1/privacy/export", headers=mine).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert api.get("/api/v1/privacy/export", headers=theirs).status_code == 200
