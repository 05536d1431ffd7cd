"""Advertisers and campaigns: validation with clear errors, owner-only access, and the
draft → registered → active path through transactions the API builds and the indexer sees."""

from __future__ import annotations

import pytest

from tests.api.conftest import Wallet, auth
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account

USDC = 10**6
MISSING = object()
CAMPAIGN = {
    "name": "Launch",
    "bid_model": "cpm",
    "bid": 2 * USDC,
    "total_budget": 100 * USDC,
    "max_spend_per_epoch": 10 * USDC,
    "format": "banner",
    "landing_url": "https://shop.example/launch",
    "targeting": {"geo": ["US", "DE"], "devices": ["mobile"], "quality_min": 40},
}


def advertiser(api, wallet) -> dict[str, str]:
    headers = auth(api, wallet)
    reply = api.post(
        "/api/v1/advertisers",
        json={"company_name": "Shop", "website_url": "https://shop.example"},
        headers=headers,
    )
    assert reply.status_code == 201, reply.text
    return headers


def test_draft_is_created_with_its_metadata_hash(api, wallet):
    headers = advertiser(api, wallet)

    created = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers)

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "draft" and body["onchain_id"] is None
    assert body["targeting"] == {
        "geo": ["DE", "US"],
        "categories": [],
        "devices": ["mobile"],
        "quality_min": 40,
    }
    assert body["metadata_hash"].startswith("0x") and len(body["metadata_hash"]) == 66
    assert [c["id"] for c in api.get("/api/v1/campaigns", headers=headers).json()] == [body["id"]]
    assert api.delete(f"/api/v1/campaigns/{body['id']}", headers=headers).status_code == 204


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bid": 0}, "body.bid"),
        ({"max_spend_per_epoch": 0}, "body.max_spend_per_epoch"),
        ({"max_spend_per_epoch": 2**128}, "body.max_spend_per_epoch"),
        ({"max_spend_per_epoch": MISSING}, "body.max_spend_per_epoch"),
        ({"max_spend_per_epoch": "lots"}, "body.max_spend_per_epoch"),
        ({"bid": 101 * USDC}, "body"),
        ({"targeting": {"geo": ["XX"]}}, "body.targeting.geo"),
        ({"targeting": {"devices": ["fridge"]}}, "body.targeting.devices"),
        ({"targeting": {"categories": ["weapons"]}}, "body.targeting.categories"),
        ({"targeting": {"quality_min": 101}}, "body.targeting.quality_min"),
        ({"start_date": "2027-02-01T00:00:00Z", "end_date": "2027-01-01T00:00:00Z"}, "body"),
        ({"landing_url": "javascript:alert(1)"}, "body.landing_url"),
        ({"bid_model": "cpa"}, "body.bid_model"),
    ],
    ids=[
        "zero-bid",
        "zero-max",
        "max>uint128",
        "no-max",
        "max-not-a-number",
        "bid>total",
        "geo",
        "device",
        "category",
        "quality",
        "dates",
        "landing-scheme",
        "bid-model",
    ],
)
def test_bad_campaigns_are_refused_with_the_field_named(api, wallet, change, field):
    headers = advertiser(api, wallet)
    body = {k: v for k, v in {**CAMPAIGN, **change}.items() if v is not MISSING}
    reply = api.post("/api/v1/campaigns", json=body, headers=headers)
    assert reply.status_code == 422
    problems = reply.json()["error"]["details"]["problems"]
    assert problems[0]["field"] == field, problems
    assert api.get("/api/v1/campaigns", headers=headers).json() == []


def test_the_max_per_epoch_is_bounded_by_what_the_chain_can_hold(api, wallet):
    headers = advertiser(api, wallet)
    top = 2**128 - 1
    accepted = api.post(
        "/api/v1/campaigns", json={**CAMPAIGN, "max_spend_per_epoch": top}, headers=headers
    )
    assert accepted.status_code == 201 and accepted.json()["max_spend_per_epoch"] == top
    refused = api.post(
        "/api/v1/campaigns", json={**CAMPAIGN, "max_spend_per_epoch": top + 1}, headers=headers
    )
    (problem,) = refused.json()["error"]["details"]["problems"]
    assert str(top) in problem["problem"]


def test_another_wallet_cannot_see_or_touch_a_campaign(api, wallet):
    headers = advertiser(api, wallet)
    campaign_id = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers).json()["id"]
    intruder = advertiser(api, Wallet())
    path = f"/api/v1/campaigns/{campaign_id}"

    assert api.get(path, headers=intruder).status_code == 404
    assert api.delete(path, headers=intruder).status_code == 404
    assert api.post(f"{path}/registration-tx", headers=intruder).status_code == 404
    assert api.post(f"{path}/funding-txs", json={"amount": 1}, headers=intruder).status_code == 404
    assert api.get("/api/v1/campaigns", headers=intruder).json() == []
    assert api.get(path, headers=headers).status_code == 200
    assert api.get("/api/v1/campaigns/not-a-uuid", headers=headers).status_code == 404


def test_register_and_fund_on_chain(api, chain, database_url):
    owner = Wallet(dev_account(8))
    headers = advertiser(api, owner)
    campaign = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers).json()
    path = f"/api/v1/campaigns/{campaign['id']}"
    not_yet = api.post(f"{path}/funding-txs", json={"amount": USDC}, headers=headers)
    assert not_yet.status_code == 409

    def send(tx):
        chain.rpc.call(
            "eth_sendTransaction",
            {"from": owner.address, "to": tx["to"], "data": tx["data"], "value": tx["value"]},
        )

    from tests.api.test_creatives import png  # that module imports this one

    upload = api.post(
        f"{path}/creatives", files={"file": ("a.png", png(300, 250))}, headers=headers
    )
    assert upload.status_code == 201, upload.text
    send(api.post(f"{path}/registration-tx", headers=headers).json())
    chain.mine(1)
    index_to_head(chain.rpc_url, database_url)
    registered = api.get(path, headers=headers).json()
    assert registered["status"] == "registered" and registered["onchain_id"] is not None
    onchain_max = chain.call("CampaignRegistry", "max_spend_per_epoch", registered["onchain_id"])
    assert list(onchain_max)[:2] == [10 * USDC, 10 * USDC]
    assert registered["max_spend"] == {
        "in_force": 10 * USDC,
        "newest": 10 * USDC,
        "effective_epoch": 0,
    }

    chain.mint_usdc(8, 100 * USDC)
    for tx in api.post(f"{path}/funding-txs", json={"amount": 100 * USDC}, headers=headers).json():
        send(tx)
    chain.mine(1)
    index_to_head(chain.rpc_url, database_url)

    funded = api.get(path, headers=headers).json()
    assert (funded["status"], funded["escrow_balance"]) == ("active", 100 * USDC)
    assert (funded["servable"], funded["not_servable_reason"]) == (True, None)
    assert api.delete(path, headers=headers).status_code == 409
    assert api.post(f"{path}/registration-tx", headers=headers).status_code == 409


def test_a_campaign_opts_in_to_unverified_inventory_off_chain(api, wallet):
    """Off by default; set on create or update and shown in the read model. It is not part
    of what the chain records, so changing it needs no transaction."""
    headers = advertiser(api, wallet)
    default = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers).json()
    assert default["unverified_inventory"] is False

    opted = api.post(
        "/api/v1/campaigns", json={**CAMPAIGN, "unverified_inventory": True}, headers=headers
    ).json()
    assert opted["unverified_inventory"] is True
    assert opted["metadata_hash"] == default["metadata_hash"]

    path = f"/api/v1/campaigns/{opted['id']}"
    changed = api.patch(path, json={"unverified_inventory": False}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert api.get(path, headers=headers).json()["unverified_inventory"] is False
    bad = api.patch(path, json={"unverified_inventory": "maybe"}, headers=headers)
    assert bad.status_code == 422
