"""Route by route: wallet B, signed in with its own publisher and advertiser profiles, can
neither read nor change wallet A's slots, campaigns or creatives, and A's data is unchanged
afterwards. Every route that names a resource must be in the matrix, so a new route cannot
skip this check. (`/me` routes name no resource: they resolve to the caller's own.)"""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import Wallet, auth
from tests.api.test_campaigns import CAMPAIGN
from tests.api.test_creatives import png
from tests.api.test_slots import SLOT

# (method, path, json body or None); {site}, {slot} and {campaign} are A's
MATRIX = [
    ("GET", "/api/v1/publishers/me/sites/{site}", None),
    ("DELETE", "/api/v1/publishers/me/sites/{site}", None),
    ("GET", "/api/v1/publishers/me/sites/{site}/domain", None),
    ("POST", "/api/v1/publishers/me/sites/{site}/domain/verify", {"method": "dns"}),
    ("GET", "/api/v1/publishers/me/slots/{slot}", None),
    ("PATCH", "/api/v1/publishers/me/slots/{slot}", {"status": "paused"}),
    ("DELETE", "/api/v1/publishers/me/slots/{slot}", None),
    ("GET", "/api/v1/publishers/me/slots/{slot}/integration", None),
    ("GET", "/api/v1/campaigns/{campaign}", None),
    ("GET", "/api/v1/campaigns/{campaign}/spend", None),
    ("GET", "/api/v1/analytics/campaigns/{campaign}", None),
    ("GET", "/api/v1/analytics/campaigns/{campaign}/ivt", None),
    ("PATCH", "/api/v1/campaigns/{campaign}", {"name": "Taken over"}),
    ("DELETE", "/api/v1/campaigns/{campaign}", None),
    ("POST", "/api/v1/campaigns/{campaign}/registration-tx", None),
    ("POST", "/api/v1/campaigns/{campaign}/funding-txs", {"amount": 1}),
    ("POST", "/api/v1/campaigns/{campaign}/max-spend-tx", {"max_spend_per_epoch": 1}),
    ("POST", "/api/v1/campaigns/{campaign}/metadata-tx", None),
    ("POST", "/api/v1/campaigns/{campaign}/status-tx", {"status": "paused"}),
    ("POST", "/api/v1/campaigns/{campaign}/withdraw-request-tx", {"amount": 1}),
    ("POST", "/api/v1/campaigns/{campaign}/withdraw-cancel-tx", None),
    ("POST", "/api/v1/campaigns/{campaign}/withdraw-tx", None),
    ("POST", "/api/v1/campaigns/{campaign}/creatives", "upload"),
]
# content-addressed files served to every page; ad clicks (the signed token is the
# authority)
# settlement's outcome is public so anyone can check a root
SETTLEMENT = {
    "/api/v1/settlement/epochs",
    "/api/v1/settlement/roots/{root_id}",
    "/api/v1/settlement/artefacts/{chain_id}/{root_id}.json",
}
# a transaction's status is public on-chain (signed-in only, to bound the RPC load it causes)
PUBLIC = {"/creatives/{cid}", "/track/click/{token}", "/api/v1/tx/{tx_hash}", *SETTLEMENT}


def owned_by_a(api) -> tuple[dict[str, str], dict[str, str]]:
    a = auth(api, Wallet())
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=a)
    site = api.post(
        "/api/v1/publishers/me/sites", json={"website_url": "https://a2.example"}, headers=a
    ).json()["id"]
    slot = api.post("/api/v1/publishers/me/slots", json=SLOT, headers=a).json()["slot_id"]
    api.post(
        "/api/v1/advertisers",
        json={"company_name": "A", "website_url": "https://a.example"},
        headers=a,
    )
    campaign = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=a).json()["id"]
    upload = api.post(
        f"/api/v1/campaigns/{campaign}/creatives",
        files={"file": ("a.png", png(300, 250))},
        headers=a,
    )
    assert upload.status_code == 201, upload.text
    return a, {"site": site, "slot": slot, "campaign": campaign}


def everything_of(api, headers) -> dict[str, object]:
    return {
        path: api.get(path, headers=headers).json()
        for path in (
            "/api/v1/publishers/me",
            "/api/v1/publishers/me/slots",
            "/api/v1/publishers/me/sites",
            "/api/v1/advertisers/me",
            "/api/v1/campaigns",
            "/api/v1/privacy/export",
        )
    }


def test_every_resource_route_is_in_the_matrix(api):
    named = {
        (method.upper(), path)
        for path, operations in api.app.openapi()["paths"].items()
        if "{" in path and path not in PUBLIC
        for method in operations
    }
    covered = {
        (method, re.sub(r"\{(site|slot|campaign)\}", r"{\1_id}", path))
        for method, path, _ in MATRIX
    }
    assert named == covered


def test_wallet_b_cannot_read_or_change_wallet_a(api):
    a, ids = owned_by_a(api)
    before = everything_of(api, a)
    b = auth(api, Wallet())
    api.post("/api/v1/publishers", json={"website_url": "https://b.example"}, headers=b)
    api.post(
        "/api/v1/advertisers",
        json={"company_name": "B", "website_url": "https://b.example"},
        headers=b,
    )

    for method, template, body in MATRIX:
        path = template.format(**ids)
        if body == "upload":
            reply = api.post(path, files={"file": ("b.png", png(300, 250, 1))}, headers=b)
        else:
            reply = api.request(method, path, json=body, headers=b)
        assert reply.status_code == 404, (method, path, reply.text)
        assert reply.json()["error"]["code"] == "not_found"

    assert everything_of(api, a) == before
    exported = api.get("/api/v1/privacy/export", headers=b).text
    assert all(ids[kind] not in exported for kind in ("site", "slot", "campaign"))
    foreign_site = api.post(
        "/api/v1/publishers/me/slots", json={**SLOT, "site_id": ids["site"]}, headers=b
    )
    assert foreign_site.status_code == 404  # nor place a slot on A's site


def test_every_signed_in_route_refuses_a_missing_or_forged_session(api):
    """Route by route, from the OpenAPI paths: no token, or a token signed with another
    key, is a 401 in the one error shape, whatever the body."""
    open_paths = {"/api/v1/auth/nonce", "/api/v1/auth/verify", *SETTLEMENT}
    forged = {"Authorization": "Bearer " + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIweDAwIn0.c2lnbmF0dXJl"}
    checked = 0
    for path, operations in api.app.openapi()["paths"].items():
        if not path.startswith("/api/v1/") or path in open_paths:
            continue
        concrete = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
        for method in operations:
            for headers in ({}, forged):
                reply = api.request(method.upper(), concrete, headers=headers)
                assert reply.status_code == 401, (method, path, reply.text)
                assert reply.json()["error"]["code"] in {"no_token", "invalid_token"}
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/v1/publishers/me", {"verified": True}),
        ("PATCH", "/api/v1/publishers/me", {"wallet": "0x" + "11" * 20}),
        ("POST", "/api/v1/publishers/me/slots", {**SLOT, "status": "active", "owner": "x"}),
        ("POST", "/api/v1/publishers/me/sites", {"website_url": "https://c.example", "main": True}),
        ("PATCH", "/api/v1/advertisers/me", {"wallet": "0x" + "11" * 20}),
        ("POST", "/api/v1/campaigns", {**CAMPAIGN, "status": "active"}),
        ("POST", "/api/v1/campaigns", {**CAMPAIGN, "escrow_balance": 10**12}),
    ],
    ids=["verified", "wallet", "slot-owner", "main-site", "advertiser-wallet", "status", "balance"],
)
def test_protected_fields_cannot_be_set(api, method, path, body):
    a, _ = owned_by_a(api)
    before = everything_of(api, a)
    reply = api.request(method, path, json=body, headers=a)
    assert reply.status_code == 422, reply.text
    assert everything_of(api, a) == before
