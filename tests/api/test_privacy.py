"""Export and deletion of a wallet's off-chain data; on-chain facts explained, not hidden."""

from __future__ import annotations

from tests.api.conftest import Wallet, auth
from tests.api.test_campaigns import CAMPAIGN, advertiser
from tests.api.test_creatives import png
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account


def test_export_then_delete(api, wallet):
    headers = auth(api, wallet)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    slot = {"name": "Top", "format": "banner", "width": 728, "height": 90}
    api.post("/api/v1/publishers/me/slots", json=slot, headers=headers)
    other = auth(api, Wallet())
    api.post("/api/v1/publishers", json={"website_url": "https://b.example"}, headers=other)

    exported = api.get("/api/v1/privacy/export", headers=headers).json()

    assert exported["wallet"] == wallet.address
    assert exported["off_chain"]["publisher_profile"]["website_url"] == "https://a.example/"
    assert [s["name"] for s in exported["off_chain"]["ad_slots"]] == ["Top"]
    assert exported["on_chain"]["publisher"]["registered"] is False
    assert "cannot remove" in exported["on_chain"]["note"]

    deleted = api.delete("/api/v1/privacy/data", headers=headers).json()

    assert deleted["deleted"] == {
        "publisher_profile": 1,
        "sites": 1,
        "ad_slots": 1,
        "advertiser_profile": 0,
        "campaigns": 0,
        "creatives": 0,
    }
    assert api.get("/api/v1/publishers/me", headers=headers).status_code == 404
    assert api.get("/api/v1/privacy/export", headers=headers).json()["off_chain"] == {
        "publisher_profile": None,
        "sites": [],
        "ad_slots": [],
        "advertiser_profile": None,
        "campaigns": [],
        "creatives": [],
    }
    assert api.get("/api/v1/publishers/me", headers=other).status_code == 200  # others untouched


def test_privacy_routes_need_a_session(api):
    assert api.get("/api/v1/privacy/export").status_code == 401
    assert api.delete("/api/v1/privacy/data").status_code == 401


def test_advertiser_data_goes_but_live_campaigns_stay(api, chain, database_url):
    owner = Wallet(dev_account(16))
    headers = advertiser(api, owner)
    draft = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers).json()["id"]
    image = png(300, 250, noise=3)
    cid = api.post(
        f"/api/v1/campaigns/{draft}/creatives", files={"file": ("a.png", image)}, headers=headers
    ).json()["cid"]
    live = api.post("/api/v1/campaigns", json={**CAMPAIGN, "name": "Live"}, headers=headers)
    live_id = live.json()["id"]
    live_cid = api.post(
        f"/api/v1/campaigns/{live_id}/creatives",
        files={"file": ("b.png", png(300, 250, noise=4))},
        headers=headers,
    ).json()["cid"]
    tx = api.post(f"/api/v1/campaigns/{live_id}/registration-tx", headers=headers).json()
    chain.rpc.call(
        "eth_sendTransaction", {"from": owner.address, "to": tx["to"], "data": tx["data"]}
    )
    chain.mine(1)
    index_to_head(chain.rpc_url, database_url)

    exported = api.get("/api/v1/privacy/export", headers=headers).json()
    assert {c["name"] for c in exported["off_chain"]["campaigns"]} == {"Launch", "Live"}
    assert sorted(c["cid"] for c in exported["off_chain"]["creatives"]) == sorted([cid, live_cid])
    assert len(exported["on_chain"]["campaigns"]) == 1

    deleted = api.delete("/api/v1/privacy/data", headers=headers).json()

    assert (deleted["deleted"]["campaigns"], deleted["deleted"]["creatives"]) == (1, 1)
    assert deleted["deleted"]["advertiser_profile"] == 0  # it still owns a live campaign
    assert deleted["kept_live_campaigns"] == [live_id]
    assert api.get(f"/api/v1/campaigns/{draft}", headers=headers).status_code == 404
    assert api.get(f"/api/v1/campaigns/{live_id}", headers=headers).status_code == 200
    assert api.get(f"/creatives/{cid}").status_code == 404  # the file is gone too
