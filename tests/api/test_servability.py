"""Whether the ad server can show a campaign, and why not, in the campaign's read model: a
campaign with no creative could never serve (its creatives are fixed by the metadata hash the
registration puts on-chain), so the API refuses to build its registration; every other reason
follows what the chain, the dates and the ad server's spend counters say."""

from __future__ import annotations

from typing import Any

import pytest

from api.tracking.stream import Keys
from tests.api.conftest import Wallet
from tests.api.test_campaigns import CAMPAIGN, USDC, advertiser
from tests.api.test_creatives import png
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account

OWNER = 8


def reason(api, path: str, headers: dict[str, str]) -> tuple[bool, str | None]:
    campaign = api.get(path, headers=headers).json()
    assert campaign["servable"] is (campaign["not_servable_reason"] is None)
    assert (campaign["not_servable_message"] is None) is campaign["servable"]
    return campaign["servable"], campaign["not_servable_reason"]


@pytest.fixture
def owned(api, chain, database_url):
    """A draft of OWNER's: (headers, path, send-and-index)."""
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

    return headers, path, sign


@pytest.fixture
def live(owned, api, chain):
    """OWNER's campaign with a creative, registered and funded with 100 USDC."""
    headers, path, sign = owned
    upload = api.post(
        f"{path}/creatives", files={"file": ("a.png", png(300, 250))}, headers=headers
    )
    assert upload.status_code == 201, upload.text
    sign(api.post(f"{path}/registration-tx", headers=headers).json())
    assert reason(api, path, headers) == (False, "no_escrow_balance")
    chain.mint_usdc(OWNER, 100 * USDC)
    sign(*api.post(f"{path}/funding-txs", json={"amount": 100 * USDC}, headers=headers).json())
    return owned


def test_the_registration_needs_a_creative(owned, api):
    headers, path, _ = owned
    assert reason(api, path, headers) == (False, "no_creative")

    refused = api.post(f"{path}/registration-tx", headers=headers)

    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["code"], error["details"]["field"]) == ("no_creative", "creative")
    assert "creative" in error["message"]
    api.post(f"{path}/creatives", files={"file": ("a.png", png(300, 250))}, headers=headers)
    assert reason(api, path, headers) == (False, "not_registered")
    assert api.post(f"{path}/registration-tx", headers=headers).status_code == 200


def test_a_campaign_registered_without_a_creative_reads_active_but_not_servable(
    owned, api, chain, database_url
):
    """As an older client could: registered on-chain straight from the draft's hash."""
    headers, path, sign = owned
    draft = api.get(path, headers=headers).json()
    chain.register_campaign(
        OWNER, bid=draft["bid"], metadata_hash=draft["metadata_hash"], max_spend_per_epoch=USDC
    )
    chain.mint_usdc(OWNER, 10 * USDC)
    index_to_head(chain.rpc_url, database_url)
    sign(*api.post(f"{path}/funding-txs", json={"amount": 10 * USDC}, headers=headers).json())

    campaign = api.get(path, headers=headers).json()

    assert (campaign["status"], campaign["escrow_balance"]) == ("active", 10 * USDC)
    assert (campaign["servable"], campaign["not_servable_reason"]) == (False, "no_creative")
    assert "cannot be added after registration" in campaign["not_servable_message"]
    assert api.get("/api/v1/campaigns", headers=headers).json()[0]["servable"] is False


def test_a_funded_campaign_serves_until_paused_or_ended(live, api):
    headers, path, sign = live
    assert reason(api, path, headers) == (True, None)

    sign(api.post(f"{path}/status-tx", json={"status": "paused"}, headers=headers).json())
    assert reason(api, path, headers) == (False, "paused")
    sign(api.post(f"{path}/status-tx", json={"status": "active"}, headers=headers).json())
    assert reason(api, path, headers) == (True, None)
    sign(api.post(f"{path}/status-tx", json={"status": "ended"}, headers=headers).json())
    assert reason(api, path, headers) == (False, "ended")


def test_a_pending_withdraw_or_an_unsigned_edit_stops_serving(live, api):
    headers, path, sign = live
    sign(api.post(f"{path}/withdraw-request-tx", json={"amount": USDC}, headers=headers).json())
    assert reason(api, path, headers) == (False, "withdraw_pending")
    sign(api.post(f"{path}/withdraw-cancel-tx", headers=headers).json())
    assert reason(api, path, headers) == (True, None)

    api.patch(path, json={"bid": 3 * USDC}, headers=headers)
    assert reason(api, path, headers) == (False, "pending_update")
    sign(api.post(f"{path}/metadata-tx", headers=headers).json())
    assert reason(api, path, headers) == (True, None)


@pytest.mark.parametrize(
    ("dates", "code"),
    [
        ({"start_date": "2999-01-01T00:00:00Z"}, "not_started"),
        ({"start_date": "2000-01-01T00:00:00Z", "end_date": "2001-01-01T00:00:00Z"}, "ended"),
    ],
    ids=["not-started", "end-date-passed"],
)
def test_the_dates_bound_serving(live, api, dates, code):
    headers, path, _ = live
    assert api.patch(path, json=dates, headers=headers).status_code == 200
    assert reason(api, path, headers) == (False, code)


def test_spend_held_by_the_ad_server_counts(live, api, chain):
    """The escrow balance less what is billed and reserved, and this epoch's max less this
    epoch's spend, must each cover one more event (an impression at 2 USDC CPM: 2000)."""
    headers, path, _ = live
    campaign = api.get(path, headers=headers).json()
    keys = Keys(campaign["onchain_id"], api.app.state.settings.tracking_shards)
    cache = api.app.state.redis

    cache.set(keys.billed, 60 * USDC)
    cache.set(keys.reserved, 40 * USDC - 2000)
    assert reason(api, path, headers) == (True, None)
    cache.incr(keys.reserved)
    assert reason(api, path, headers) == (False, "budget_spent")
    cache.delete(keys.billed, keys.reserved)

    epoch = keys.epoch(chain.current_epoch())
    cache.set(epoch, 10 * USDC - 2000)  # the campaign's max per epoch is 10 USDC
    assert reason(api, path, headers) == (True, None)
    cache.incr(epoch)
    assert reason(api, path, headers) == (False, "epoch_budget_spent")
