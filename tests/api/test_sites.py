"""A publisher's sites: the profile's website is the main one, more can be added, each
proves its own domain, and the chain's domain hash commits to all verified domains."""

from __future__ import annotations

import psycopg
import pytest
from eth_utils import keccak
from pydantic import ValidationError

from api.core.settings import Settings
from migrations import libpq_url
from scripts._stack import services_env
from tests.api.conftest import Wallet, auth
from tests.api.test_slots import SLOT
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account

SITES = "/api/v1/publishers/me/sites"


def publisher(api, wallet, url="https://news.example") -> dict[str, str]:
    headers = auth(api, wallet)
    created = api.post(
        "/api/v1/publishers", json={"website_url": url, "category": "news"}, headers=headers
    )
    assert created.status_code == 201, created.text
    return headers


def test_sites_crud(api, wallet):
    headers = publisher(api, wallet)
    (main,) = api.get(SITES, headers=headers).json()
    assert (main["domain"], main["main"], main["verified"], main["category"]) == (
        "news.example",
        True,
        False,
        "news",
    )

    shop = api.post(
        SITES,
        json={"website_url": "https://www.Shop.example/", "category": "shopping"},
        headers=headers,
    )
    assert shop.status_code == 201, shop.text
    site = shop.json()
    assert (site["domain"], site["main"]) == ("shop.example", False)
    again = api.post(SITES, json={"website_url": "https://shop.example/x"}, headers=headers)
    assert again.status_code == 409
    bad = api.post(
        SITES, json={"website_url": "https://c.example", "category": "gossip"}, headers=headers
    )
    assert bad.status_code == 422
    assert api.delete(f"{SITES}/{main['id']}", headers=headers).status_code == 409

    slot = api.post(
        "/api/v1/publishers/me/slots", json={**SLOT, "site_id": site["id"]}, headers=headers
    ).json()
    assert slot["site_id"] == site["id"]
    busy = api.delete(f"{SITES}/{site['id']}", headers=headers)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "has_slots"
    api.delete(f"/api/v1/publishers/me/slots/{slot['slot_id']}", headers=headers)
    assert api.delete(f"{SITES}/{site['id']}", headers=headers).status_code == 204
    assert [s["domain"] for s in api.get(SITES, headers=headers).json()] == ["news.example"]
    default = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=headers).json()
    assert default["site_id"] == main["id"]  # a slot without a site goes on the main one


def test_changing_the_website_moves_the_main_site(api, wallet):
    headers = publisher(api, wallet)
    api.patch("/api/v1/publishers/me", json={"website_url": "https://new.example"}, headers=headers)
    (main,) = api.get(SITES, headers=headers).json()
    assert (main["domain"], main["url"]) == ("new.example", "https://new.example/")


def test_each_verified_site_joins_the_onchain_commitment(api, chain, database_url):
    owner = Wallet(dev_account(17))
    headers = publisher(api, owner, "https://publisher.test")
    chain.register_publisher(17, "multi-site")
    index_to_head(chain.rpc_url, database_url)
    shop = api.post(SITES, json={"website_url": "https://shop.test"}, headers=headers).json()
    tokens = {
        "publisher.test": api.get("/api/v1/publishers/me/domain", headers=headers).json()["token"],
        "shop.test": api.get(f"{SITES}/{shop['id']}/domain", headers=headers).json()["token"],
    }
    api.app.state.txt_lookup = lambda name: [
        f"buzzer-verification={token}"
        for domain, token in tokens.items()
        if name == f"_buzzer.{domain}"
    ]
    api.app.state.settings.oracle_private_key = "0x" + dev_account(2).key.hex().removeprefix("0x")

    first = api.post("/api/v1/publishers/me/domain/verify", json={"method": "dns"}, headers=headers)
    assert first.json()["domain_hash"] == "0x" + keccak(text="publisher.test").hex()
    second = api.post(
        f"{SITES}/{shop['id']}/domain/verify", json={"method": "dns"}, headers=headers
    )

    assert second.status_code == 200, second.text
    both = "0x" + keccak(text="publisher.test\nshop.test").hex()
    assert second.json()["domain_hash"] == both
    index_to_head(chain.rpc_url, database_url)
    assert (
        api.get("/api/v1/publishers/me", headers=headers).json()["onchain"]["domain_hash"] == both
    )
    assert all(s["verified"] for s in api.get(SITES, headers=headers).json())

    squatter = publisher(api, Wallet(dev_account(18)), "https://shop.test")
    chain.register_publisher(18, "squatter")
    index_to_head(chain.rpc_url, database_url)
    taken = api.post(
        "/api/v1/publishers/me/domain/verify", json={"method": "dns"}, headers=squatter
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "domain_taken"


def test_sites_are_unverified_when_added_unless_the_dev_setting_trusts_them(api, database_url):
    """Off by default: a new publisher's main site and an added site wait for a domain
    proof. With `dev_trust_sites` (local chains only) both count as verified at once."""
    assert api.app.state.settings.dev_trust_sites is False
    plain = publisher(api, Wallet(), "https://plain.example")
    api.post(SITES, json={"website_url": "https://plain-shop.example"}, headers=plain)
    assert [s["verified"] for s in api.get(SITES, headers=plain).json()] == [False, False]

    api.app.state.settings.dev_trust_sites = True
    trusted = publisher(api, Wallet(), "https://demo.example")
    api.post(SITES, json={"website_url": "https://demo-shop.example"}, headers=trusted)
    sites = api.get(SITES, headers=trusted).json()
    assert [(s["domain"], s["verified"]) for s in sites] == [
        ("demo.example", True),
        ("demo-shop.example", True),
    ]
    with psycopg.connect(libpq_url(database_url)) as conn:
        methods = conn.execute(
            "SELECT domain, verified_by FROM publisher_sites WHERE domain LIKE 'demo%'"
            " ORDER BY domain"
        ).fetchall()
    assert methods == [("demo-shop.example", "dev"), ("demo.example", "dev")]


@pytest.mark.parametrize("chain_id", [8453, 84532, 1])
def test_the_dev_trust_setting_is_refused_off_a_local_chain(monkeypatch, chain_id):
    monkeypatch.setenv("BUZZER_DEV_TRUST_SITES", "1")
    monkeypatch.setenv("CHAIN_ID", str(chain_id))
    with pytest.raises(ValidationError, match="BUZZER_DEV_TRUST_SITES is for a local chain"):
        Settings()


@pytest.mark.parametrize("chain_id", [1337, 31337])
def test_the_dev_trust_setting_works_on_a_local_chain_and_is_off_by_default(monkeypatch, chain_id):
    monkeypatch.delenv("BUZZER_DEV_TRUST_SITES", raising=False)
    monkeypatch.setenv("CHAIN_ID", str(chain_id))
    assert Settings().dev_trust_sites is False
    monkeypatch.setenv("BUZZER_DEV_TRUST_SITES", "1")
    assert Settings().dev_trust_sites is True


def test_make_run_trusts_sites_on_its_local_chain_only(monkeypatch):
    monkeypatch.delenv("BUZZER_DEV_TRUST_SITES", raising=False)
    local = services_env("http://127.0.0.1:8545", "postgresql://x", "redis://x", 1337)
    assert local["BUZZER_DEV_TRUST_SITES"] == "1"
    remote = services_env("https://base.example", "postgresql://x", "redis://x", 8453)
    assert "BUZZER_DEV_TRUST_SITES" not in remote
