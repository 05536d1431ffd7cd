"""Export and deletion of a wallet's off-chain data; on-chain facts explained, not hidden."""

from __future__ import annotations

from tests.api.conftest import Wallet, auth


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

    assert deleted["deleted"] == {"publisher_profile": 1, "ad_slots": 1}
    assert api.get("/api/v1/publishers/me", headers=headers).status_code == 404
    assert api.get("/api/v1/privacy/export", headers=headers).json()["off_chain"] == {
        "publisher_profile": None,
        "ad_slots": [],
    }
    assert api.get("/api/v1/publishers/me", headers=other).status_code == 200  # others untouched


def test_privacy_routes_need_a_session(api):
    assert api.get("/api/v1/privacy/export").status_code == 401
    assert api.delete("/api/v1/privacy/data").status_code == 401
