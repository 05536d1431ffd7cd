"""Who the client is: a forwarded address counts only when a trusted proxy forwarded it, so a
client cannot pose as many IPs to escape a per-IP limit; a proxy we trust is read from the
right (the hop it added), and a header that cannot be read gives the peer."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from api.core.clientip import client_ip
from api.core.settings import Settings
from api.main import create_app

PROXY = "10.0.0.1"


def limited(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(update={"rate_limit_auth_per_minute": 2, **update})


def nonce_statuses(client: TestClient, headers: list[dict[str, str]]) -> list[int]:
    return [client.get("/api/v1/auth/nonce", headers=h).status_code for h in headers]


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(settings):
    with TestClient(create_app(limited(settings)), client=("198.51.100.7", 4000)) as client:
        client.app.state.redis.flushdb()
        spoofed = [
            {"X-Forwarded-For": f"203.0.113.{n}", "Forwarded": f"for=203.0.113.{n}"}
            for n in range(4)
        ]
        assert nonce_statuses(client, spoofed) == [200, 200, 429, 429]


def test_loopback_is_not_trusted_by_default(settings):
    # uvicorn trusts 127.0.0.1 unless told otherwise; we trust no one unless told
    with TestClient(create_app(limited(settings)), client=("127.0.0.1", 4000)) as client:
        client.app.state.redis.flushdb()
        spoofed = [{"X-Forwarded-For": f"203.0.113.{n}"} for n in range(3)]
        assert nonce_statuses(client, spoofed) == [200, 200, 429]


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(settings):
    app = create_app(limited(settings, trusted_proxies=["10.0.0.0/24"]))
    with TestClient(app, client=(PROXY, 4000)) as client:
        client.app.state.redis.flushdb()
        many = [{"X-Forwarded-For": f"203.0.113.{n}"} for n in range(4)]
        assert nonce_statuses(client, many) == [200] * 4
        # one client that rotates what it writes left of the proxy's own hop gains nothing
        rotating = [{"X-Forwarded-For": f"192.0.2.{n}, 203.0.113.50"} for n in range(3)]
        assert nonce_statuses(client, rotating) == [200, 200, 429]
        # the same for RFC 7239's header, IPv6 and ports included
        v6 = [{"Forwarded": f'for=192.0.2.{n}, for="[2001:db8::7]:4711"'} for n in range(3)]
        assert nonce_statuses(client, v6) == [200, 200, 429]


def test_behind_a_trusted_proxy_an_unreadable_header_counts_as_the_proxy(settings):
    app = create_app(limited(settings, trusted_proxies=[PROXY]))
    with TestClient(app, client=(PROXY, 4000)) as client:
        client.app.state.redis.flushdb()
        garbage = [
            {"X-Forwarded-For": "not-an-ip"},
            {"X-Forwarded-For": ""},
            {"Forwarded": "for=unknown"},
        ]
        assert nonce_statuses(client, garbage) == [200, 200, 429]


def test_the_ad_endpoint_limits_the_client_not_what_it_claims(settings):
    spoofing = settings.model_copy(update={"rate_limit_ad_per_minute": 2})
    with TestClient(create_app(spoofing), client=("198.51.100.8", 4000)) as client:
        statuses = [
            client.get("/x402/ad", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(3)
        ]
    assert statuses == [422, 422, 429]  # the query is bad, but the limit comes first


def request(peer: str | None, *headers: tuple[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": (peer, 1234) if peer else None,
    }
    return Request(scope)


TRUSTING = Settings(jwt_secret="x" * 32, trusted_proxies=["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        # untrusted peers: their headers are ignored
        ("192.0.2.1", [("X-Forwarded-For", "203.0.113.9")], "192.0.2.1"),
        ("192.0.2.1", [("Forwarded", "for=203.0.113.9")], "192.0.2.1"),
        # trusted: the rightmost address that is not one of our proxies
        ("10.0.0.1", [("X-Forwarded-For", "203.0.113.9")], "203.0.113.9"),
        ("10.0.0.1", [("X-Forwarded-For", "1.1.1.1, 203.0.113.9, 10.2.3.4")], "203.0.113.9"),
        ("10.0.0.1", [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.9")],
         "203.0.113.9"),
        ("fd00::1", [("X-Forwarded-For", "2001:db8::5")], "2001:db8::5"),
        ("10.0.0.1", [("X-Forwarded-For", "203.0.113.9:5555")], "203.0.113.9"),
        ("10.0.0.1", [("X-Forwarded-For", "::ffff:203.0.113.9")], "203.0.113.9"),
        ("10.0.0.1", [("Forwarded", 'for="[2001:db8::5]:80";proto=https')], "2001:db8::5"),
        ("10.0.0.1", [("Forwarded", "for=1.1.1.1, For=203.0.113.9;by=10.0.0.1")], "203.0.113.9"),
        # Forwarded wins over X-Forwarded-For
        ("10.0.0.1", [("Forwarded", "for=203.0.113.9"), ("X-Forwarded-For", "1.1.1.1")],
         "203.0.113.9"),
        # all hops are ours: the leftmost
        ("10.0.0.1", [("X-Forwarded-For", "10.9.9.9, 10.0.0.2")], "10.9.9.9"),
        # unreadable where it matters: the peer
        ("10.0.0.1", [("X-Forwarded-For", "203.0.113.9, junk")], "10.0.0.1"),
        ("10.0.0.1", [("X-Forwarded-For", "")], "10.0.0.1"),
        ("10.0.0.1", [("Forwarded", "for=_hidden")], "10.0.0.1"),
        ("10.0.0.1", [("Forwarded", "proto=https")], "10.0.0.1"),
        ("10.0.0.1", [("X-Forwarded-For", "[2001:db8::5")], "10.0.0.1"),
        # junk left of the hop our proxy added does not matter
        ("10.0.0.1", [("X-Forwarded-For", "junk, 203.0.113.9")], "203.0.113.9"),
        # no header from a trusted proxy: the proxy itself
        ("10.0.0.1", [], "10.0.0.1"),
        (None, [("X-Forwarded-For", "203.0.113.9")], "unknown"),
    ],
)  # fmt: skip
def test_client_ip(peer, headers, client):
    assert client_ip(request(peer, *headers), TRUSTING) == client


def test_nobody_is_trusted_by_default():
    default = Settings(jwt_secret="x" * 32)
    assert client_ip(request("127.0.0.1", ("X-Forwarded-For", "203.0.113.9")), default) == (
        "127.0.0.1"
    )
