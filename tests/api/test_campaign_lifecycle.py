"""A registered campaign's life through transactions the API builds: edit and re-sign its
metadata, pause, resume, withdraw (request, delay, take back), cancel, end. Every step is
signed by the advertiser's wallet on anvil and read back through the indexer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Wallet
from tests.api.test_campaigns import CAMPAIGN, USDC, advertiser
from tests.api.test_creatives import png
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account

OWNER = 8


@pytest.fixture
def live(api, chain, database_url):
    """A registered campaign funded with 100 USDC: (headers, path, send-and-index)."""
    owner = Wallet(dev_account(OWNER))
    headers = advertiser(api, owner)
    campaign = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers).json()
    path = f"/api/v1/campaigns/{campaign['id']}"

    def sign(*txs: dict[str, Any]) -> None:
        for tx in txs:
            chain.rpc.call(
                "eth_sendTransaction",
                {"from": owner.address, "to": tx["to"], "data": tx["data"], "value": tx["value"]},
            )
        chain.mine(1)
        index_to_head(chain.rpc_url, database_url)

    upload = api.post(
        f"{path}/creatives", files={"file": ("a.png", png(300, 250))}, headers=headers
    )
    assert upload.status_code == 201, upload.text
    sign(api.post(f"{path}/registration-tx", headers=headers).json())
    chain.mint_usdc(OWNER, 100 * USDC)
    sign(*api.post(f"{path}/funding-txs", json={"amount": 100 * USDC}, headers=headers).json())
    assert api.get(path, headers=headers).json()["status"] == "active"
    return headers, path, sign


def test_an_edit_waits_for_the_signed_metadata(live, api):
    headers, path, sign = live
    before = api.get(path, headers=headers).json()

    edited = api.patch(
        path, json={"bid": 3 * USDC, "targeting": {"geo": ["FR"]}}, headers=headers
    ).json()

    assert edited["pending_update"] is True
    assert edited["onchain_bid"] == 2 * USDC and edited["metadata_hash"] != before["metadata_hash"]
    sign(api.post(f"{path}/metadata-tx", headers=headers).json())
    after = api.get(path, headers=headers).json()
    assert (after["pending_update"], after["onchain_bid"]) == (False, 3 * USDC)
    assert after["targeting"]["geo"] == ["FR"]
    again = api.post(f"{path}/metadata-tx", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "no_change"


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        ({"token": "0x" + "11" * 20}, "fixed_at_registration", 409),
        ({"bid_model": "cpc"}, "fixed_at_registration", 409),
        ({"max_spend_per_epoch": 5 * USDC}, "set_on_chain", 409),
        ({"max_spend_per_epoch": 0}, "validation_error", 422),
        ({"end_date": "2000-01-01T00:00:00Z", "start_date": "2001-01-01T00:00:00Z"}, None, 422),
    ],
    ids=["token", "bid-model", "max-spend", "zero-max-spend", "dates"],
)
def test_bad_edits_change_nothing(live, api, change, code, status):
    headers, path, _ = live
    before = api.get(path, headers=headers).json()

    reply = api.patch(path, json=change, headers=headers)

    assert reply.status_code == status, reply.text
    if code:
        assert reply.json()["error"]["code"] == code
    assert api.get(path, headers=headers).json() == before


def test_a_new_max_per_epoch_applies_from_the_next_epoch(live, api, chain, database_url):
    headers, path, sign = live
    epoch = chain.current_epoch()

    sign(
        api.post(
            f"{path}/max-spend-tx", json={"max_spend_per_epoch": 25 * USDC}, headers=headers
        ).json()
    )

    pending = api.get(path, headers=headers).json()["max_spend"]
    assert pending == {"in_force": 10 * USDC, "newest": 25 * USDC, "effective_epoch": epoch + 1}
    again = api.post(
        f"{path}/max-spend-tx", json={"max_spend_per_epoch": 25 * USDC}, headers=headers
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "no_change"
    for bad in (0, 2**128, None):
        reply = api.post(f"{path}/max-spend-tx", json={"max_spend_per_epoch": bad}, headers=headers)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "validation_error"

    chain.end_epoch(epoch)
    index_to_head(chain.rpc_url, database_url)
    in_force = api.get(path, headers=headers).json()["max_spend"]
    assert in_force == {"in_force": 25 * USDC, "newest": 25 * USDC, "effective_epoch": epoch + 1}
    campaign = api.get(path, headers=headers).json()["onchain_id"]
    assert chain.call("CampaignRegistry", "max_spend_in_epoch", campaign, epoch) == 10 * USDC


def test_pause_resume_and_end(live, api):
    headers, path, sign = live

    sign(api.post(f"{path}/status-tx", json={"status": "paused"}, headers=headers).json())
    assert api.get(path, headers=headers).json()["status"] == "paused"
    twice = api.post(f"{path}/status-tx", json={"status": "paused"}, headers=headers)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "no_change"

    sign(api.post(f"{path}/status-tx", json={"status": "active"}, headers=headers).json())
    assert api.get(path, headers=headers).json()["status"] == "active"

    sign(api.post(f"{path}/status-tx", json={"status": "ended"}, headers=headers).json())
    assert api.get(path, headers=headers).json()["status"] == "ended"
    for reply in (
        api.post(f"{path}/status-tx", json={"status": "active"}, headers=headers),
        api.patch(path, json={"name": "Again"}, headers=headers),
        api.post(f"{path}/max-spend-tx", json={"max_spend_per_epoch": USDC}, headers=headers),
    ):
        assert reply.status_code == 409 and reply.json()["error"]["code"] == "campaign_ended"
    bad = api.post(f"{path}/status-tx", json={"status": "draft"}, headers=headers)
    assert bad.status_code == 422


def test_withdraw_after_the_delay_returns_the_money(live, api, chain):
    headers, path, sign = live
    too_much = api.post(f"{path}/withdraw-request-tx", json={"amount": 101 * USDC}, headers=headers)
    assert too_much.status_code == 409 and too_much.json()["error"]["code"] == "above_balance"
    nothing = api.post(f"{path}/withdraw-tx", headers=headers)
    assert nothing.json()["error"]["code"] == "no_pending_withdraw"

    sign(
        api.post(f"{path}/withdraw-request-tx", json={"amount": 40 * USDC}, headers=headers).json()
    )
    pending = api.get(path, headers=headers).json()["withdraw"]
    assert (pending["status"], pending["amount"]) == ("pending", 40 * USDC)
    early = api.post(f"{path}/withdraw-tx", headers=headers)
    assert early.status_code == 409 and early.json()["error"]["code"] == "withdraw_not_ready"
    assert early.json()["error"]["details"]["available_at"]

    chain.increase_time(2 * 86_400 + 1)
    chain.mine(1)
    wallet_before = chain.usdc_balance(OWNER)
    sign(api.post(f"{path}/withdraw-tx", headers=headers).json())

    done = api.get(path, headers=headers).json()
    assert chain.usdc_balance(OWNER) - wallet_before == 40 * USDC
    assert (done["withdraw"]["status"], done["withdraw"]["paid"]) == ("withdrawn", 40 * USDC)
    assert done["escrow_balance"] == 60 * USDC


def test_a_withdraw_request_can_be_cancelled(live, api):
    headers, path, sign = live
    sign(api.post(f"{path}/withdraw-request-tx", json={"amount": 5 * USDC}, headers=headers).json())

    sign(api.post(f"{path}/withdraw-cancel-tx", headers=headers).json())

    assert api.get(path, headers=headers).json()["withdraw"]["status"] == "cancelled"
    again = api.post(f"{path}/withdraw-cancel-tx", headers=headers)
    assert again.status_code == 409


def test_lifecycle_needs_registration(api, wallet):
    headers = advertiser(api, wallet)
    path = (
        "/api/v1/campaigns/"
        + api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers).json()["id"]
    )
    for route, body in [
        ("metadata-tx", None),
        ("status-tx", {"status": "paused"}),
        ("max-spend-tx", {"max_spend_per_epoch": USDC}),
        ("withdraw-request-tx", {"amount": 1}),
        ("withdraw-cancel-tx", None),
        ("withdraw-tx", None),
    ]:
        reply = api.post(f"{path}/{route}", json=body, headers=headers)
        assert reply.json()["error"]["code"] == "not_registered", route
    draft_edit = api.patch(path, json={"bid_model": "cpc", "bid": USDC}, headers=headers).json()
    assert (draft_edit["bid_model"], draft_edit["bid"], draft_edit["pending_update"]) == (
        "cpc",
        USDC,
        False,
    )
