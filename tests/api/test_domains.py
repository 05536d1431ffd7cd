"""Domain verification: each proof method against a local web server, the on-chain record
by the ORACLE, and the SSRF guard (loopback, private, link-local, odd spellings, mapped
IPv6, file://, redirects to those, huge or slow bodies)."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from eth_utils import keccak

from api.publishers.domains import BlockedUrl, SafeFetcher, VerificationFailed, public_only
from tests.api.conftest import Wallet, auth
from tests.indexer.helpers import index_to_head
from tests.support.anvil import free_port
from tests.support.chain import dev_account

FAKE_PUBLIC = "127.0.0.2"  # stands for an address on the internet in these tests


class Site(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.pages.get(self.path, (404, {}, b"not here"))
        if body == b"SLOW":
            time.sleep(8)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[tuple[str, int]]:
    port = free_port()
    server = ThreadingHTTPServer((FAKE_PUBLIC, port), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Site.pages = {}
    yield FAKE_PUBLIC, port
    server.shutdown()


def fetcher_for(names: dict[str, str]) -> SafeFetcher:
    def allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return str(address) == FAKE_PUBLIC or public_only(address)

    return SafeFetcher(
        resolver=lambda host: [names[host]] if host in names else [], allowed=allowed
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "file:///etc/passwd",
        "gopher://example.com/",
    ],
)
def test_the_default_guard_blocks_internal_targets(url):
    started = time.monotonic()
    with pytest.raises(BlockedUrl):
        SafeFetcher().get(url)
    assert time.monotonic() - started < 5


def test_a_redirect_to_an_internal_address_is_blocked(site):
    host, port = site
    Site.pages = {"/": (302, {"Location": f"http://127.0.0.1:{port}/secret"}, b"")}
    with pytest.raises(BlockedUrl, match=r"127\.0\.0\.1"):
        fetcher_for({"publisher.test": host}).get(f"http://publisher.test:{port}/")


def test_huge_and_endless_redirect_bodies_are_refused(site):
    host, port = site
    Site.pages = {
        "/huge": (200, {}, b"x" * 1_500_000),
        "/loop": (302, {"Location": "/loop"}, b""),
    }
    fetcher = fetcher_for({"publisher.test": host})
    with pytest.raises(VerificationFailed, match="1 MB"):
        fetcher.get(f"http://publisher.test:{port}/huge")
    with pytest.raises(VerificationFailed, match="redirects"):
        fetcher.get(f"http://publisher.test:{port}/loop")


def test_a_slow_site_times_out_within_the_limit(site):
    host, port = site
    Site.pages = {"/slow": (200, {}, b"SLOW")}
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timed out|timeout"):
        fetcher_for({"publisher.test": host}).get(f"http://publisher.test:{port}/slow")
    assert time.monotonic() - started < 7


class OnTestPort:
    """The site answers on a test port, not 80/443: send the verifier's requests there."""

    def __init__(self, fetcher: SafeFetcher, port: int) -> None:
        self.fetcher, self.port = fetcher, port

    def get(self, url: str) -> str:
        return self.fetcher.get(url.replace("publisher.test/", f"publisher.test:{self.port}/"))


@pytest.fixture
def registered(api, chain, database_url):
    """A publisher (dev account 6) with a profile for publisher.test, registered on-chain."""
    wallet = Wallet(dev_account(6))
    headers = auth(api, wallet)
    api.post("/api/v1/publishers", json={"website_url": "https://publisher.test"}, headers=headers)
    chain.register_publisher(6, "publisher-test")
    index_to_head(chain.rpc_url, database_url)
    return wallet, headers


@pytest.mark.parametrize("method", ["dns", "well_known", "meta"])
def test_each_method_verifies_and_records_the_domain_on_chain(
    api, chain, database_url, site, registered, method
):
    _, headers = registered
    host, port = site
    guide = api.get("/api/v1/publishers/me/domain", headers=headers).json()
    assert guide["domain"] == "publisher.test"
    token = guide["token"]
    Site.pages = {
        "/.well-known/buzzer.txt": (200, {}, f"{token}\n".encode()),
        "/": (200, {}, f'<html><head><meta name="buzzer-verification" content="{token}">'.encode()),
    }
    # the site answers on a test port: route the checks there
    fetcher = fetcher_for({"publisher.test": host})
    original_get = fetcher.get
    fetcher.get = lambda url: original_get(
        url.replace("publisher.test/", f"publisher.test:{port}/")
    )  # type: ignore[method-assign]
    api.app.state.domain_fetcher = fetcher
    api.app.state.txt_lookup = lambda name: (
        [f"buzzer-verification={token}"] if name == "_buzzer.publisher.test" else []
    )
    api.app.state.settings.oracle_private_key = "0x" + dev_account(2).key.hex().removeprefix("0x")

    reply = api.post(
        "/api/v1/publishers/me/domain/verify", json={"method": method}, headers=headers
    )

    assert reply.status_code == 200, reply.text
    assert reply.json()["domain_hash"] == "0x" + keccak(text="publisher.test").hex()
    index_to_head(chain.rpc_url, database_url)
    onchain = api.get("/api/v1/publishers/me", headers=headers).json()["onchain"]
    assert onchain["domain_hash"] == reply.json()["domain_hash"]


def test_a_missing_proof_is_a_clear_failure_and_records_nothing(
    api, chain, database_url, site, registered
):
    _, headers = registered
    api.app.state.domain_fetcher = fetcher_for({"publisher.test": site[0]})
    api.app.state.txt_lookup = lambda name: ["something-else"]

    reply = api.post("/api/v1/publishers/me/domain/verify", json={"method": "dns"}, headers=headers)

    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "verification_failed"
    assert "instructions" in reply.json()["error"]["details"]
    index_to_head(chain.rpc_url, database_url)
    assert (
        api.get("/api/v1/publishers/me", headers=headers).json()["onchain"]["domain_hash"] is None
    )


def test_verification_needs_the_onchain_registration_first(api, wallet):
    headers = auth(api, wallet)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    reply = api.post("/api/v1/publishers/me/domain/verify", json={"method": "dns"}, headers=headers)
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "not_registered"
