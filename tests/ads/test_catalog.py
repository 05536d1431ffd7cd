"""The ad catalog as loaded from Postgres: CPC campaigns ranked by the click-through rate the
analytics rollup measured (smoothed by the prior), and each slot's site verification."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from api.ads.catalog import CTR_WINDOW_DAYS, Snapshot, load
from api.ads.matching import AdRequest, ranked
from api.analytics.models import AnalyticsDaily

CHAIN = 1337
TOKEN = "0x" + "cd" * 20
ADVERTISER = "0x" + "aa" * 20
CPM_BID = 2_000_000  # eCPM 2,000,000
ADVERTISER_PROFILE = uuid.uuid4()
_ids = count(1)


@pytest.fixture
def db(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE campaign_drafts, advertiser_profiles, campaigns_onchain,"
                " escrow_balances, creatives, analytics_daily, ad_slots, publisher_sites,"
                " publisher_profiles, publishers_onchain CASCADE"
            )
        )
        conn.execute(
            text(
                "INSERT INTO advertiser_profiles (id, wallet, company_name, website_url,"
                " created_at, updated_at) VALUES (:id, :wallet, 'Shop', 'https://shop.example/',"
                " now(), now())"
            ),
            {"id": ADVERTISER_PROFILE, "wallet": ADVERTISER},
        )
    return engine


def funded(db: Engine, bid_model: str, bid: int) -> int:
    """An active, funded campaign with a 300×250 banner, as the API and the indexer write
    it; its on-chain id."""
    campaign_id = next(_ids)
    draft = uuid.uuid4()
    digest = "0x" + f"{campaign_id:064x}"
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaign_drafts (id, advertiser_id, name, objective, bid_model, bid,"
                " token, total_budget, max_spend_per_epoch, targeting, format, landing_url,"
                " metadata_hash, onchain_id, created_at, updated_at) VALUES (:id, :adv, 'c',"
                " 'awareness', :model, :bid, :token, 10000000000, 10000000000, :targeting,"
                " 'banner', 'https://shop.example/', :digest, :cid, now(), now())"
            ),
            {
                "id": draft,
                "adv": ADVERTISER_PROFILE,
                "model": bid_model,
                "bid": bid,
                "token": TOKEN,
                "targeting": json.dumps({}),
                "digest": digest,
                "cid": campaign_id,
            },
        )
        conn.execute(
            text(
                "INSERT INTO campaigns_onchain (chain_id, campaign_id, advertiser, token,"
                " bid_model, bid, metadata_hash, status, registered_block, max_spend_per_epoch,"
                " previous_max_spend_per_epoch, max_spend_effective_epoch) VALUES (:chain, :cid,"
                " :adv, :token, :model, :bid, :digest, 1, 1, 10000000000, 10000000000, 0)"
            ),
            {
                "chain": CHAIN,
                "cid": campaign_id,
                "adv": ADVERTISER,
                "token": TOKEN,
                "model": int(bid_model == "cpc"),
                "bid": bid,
                "digest": digest,
            },
        )
        conn.execute(
            text(
                "INSERT INTO escrow_balances (chain_id, campaign_id, token, deposited, withdrawn,"
                " spent, balance, last_spent_epoch) VALUES (:chain, :cid, :token, 10000000000,"
                " 0, 0, 10000000000, 0)"
            ),
            {"chain": CHAIN, "cid": campaign_id, "token": TOKEN},
        )
        conn.execute(
            text(
                "INSERT INTO creatives (id, campaign_id, cid, content_type, size, width, height,"
                " created_at) VALUES (:id, :draft, :cid, 'image/png', 1000, 300, 250, now())"
            ),
            {"id": uuid.uuid4(), "draft": draft, "cid": f"bafkrei{campaign_id}"},
        )
    return campaign_id


def rolled_up(db: Engine, campaign_id: int, days_ago: int, clicks: int, impressions: int) -> None:
    """A day of the campaign's verified traffic in the analytics rollup, as `roll_up` writes
    it: the campaign's own row and its rows per slot."""
    day = (datetime.now(UTC) - timedelta(days=days_ago)).date()
    publisher = "0x" + "ab" * 20
    with Session(db) as session:
        for grain, slot in [("c", ""), ("cps", "slot-a")]:
            session.add(
                AnalyticsDaily(
                    grain=grain,
                    chain_id=CHAIN,
                    campaign_id=campaign_id,
                    publisher=publisher if slot else "",
                    slot_id=slot,
                    day=day,
                    impressions=impressions,
                    verified_impressions=impressions,
                    clicks=clicks,
                    verified_clicks=clicks,
                )
            )
        session.commit()


def best(db: Engine) -> int:
    """The campaign a verified 300×250 banner slot gets first, from the catalog loaded from
    Postgres as a worker loads it."""
    snapshot = Snapshot.of(load(db, CHAIN))
    request = AdRequest(
        format="banner",
        width=300,
        height=250,
        geo="US",
        device="desktop",
        category="news",
        quality=50,
        now=datetime.now(UTC).timestamp(),
        verified=True,
    )
    return next(ranked(snapshot.index, request)).campaign_id


def test_a_cpc_campaign_with_a_high_measured_ctr_outranks_a_cpm_one(db):
    """At the 1 % prior a 0.1 USDC click is worth an eCPM of 1,000,000, half the CPM bid;
    measured at 5 % it is worth (500 + 10) / (10,000 + 1,000) of 100,000,000 = 4,636,363."""
    cpm = funded(db, "cpm", CPM_BID)
    cpc = funded(db, "cpc", 100_000)
    assert best(db) == cpm
    rolled_up(db, cpc, days_ago=0, clicks=200, impressions=4_000)  # today so far
    rolled_up(db, cpc, days_ago=3, clicks=300, impressions=6_000)
    # outside the window: a month and more ago it did badly, which no longer counts
    rolled_up(db, cpc, days_ago=CTR_WINDOW_DAYS + 5, clicks=0, impressions=1_000_000)

    assert best(db) == cpc


def test_a_cpc_campaign_with_a_low_measured_ctr_falls_behind_a_cpm_one(db):
    """At the 1 % prior a 0.3 USDC click is worth an eCPM of 3,000,000, above the CPM bid;
    measured at 0.1 % it is worth (10 + 10) / (10,000 + 1,000) of 300,000,000 = 545,454."""
    cpm = funded(db, "cpm", CPM_BID)
    cpc = funded(db, "cpc", 300_000)
    assert best(db) == cpc
    rolled_up(db, cpc, days_ago=1, clicks=10, impressions=10_000)

    assert best(db) == cpm


def test_each_slot_knows_whether_its_site_is_verified(db):
    """A slot on a verified site, one on a site not (yet) verified, and one with no site."""
    profile = uuid.uuid4()
    verified_site, unverified_site = uuid.uuid4(), uuid.uuid4()
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO publisher_profiles (id, wallet, website_url, created_at, updated_at)"
                " VALUES (:id, :wallet, 'https://news.example/', now(), now())"
            ),
            {"id": profile, "wallet": "0x" + "ab" * 20},
        )
        for site, domain, verified_at in [
            (verified_site, "news.example", datetime.now(UTC)),
            (unverified_site, "blog.example", None),
        ]:
            conn.execute(
                text(
                    "INSERT INTO publisher_sites (id, publisher_id, url, domain, main,"
                    " verified_at, created_at) VALUES (:id, :pub, :url, :domain, false,"
                    " :verified_at, now())"
                ),
                {
                    "id": site,
                    "pub": profile,
                    "url": f"https://{domain}/",
                    "domain": domain,
                    "verified_at": verified_at,
                },
            )
        for slot_id, site_id in [("on-verified", verified_site), ("on-unverified", unverified_site),
                                 ("no-site", None)]:  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO ad_slots (id, publisher_id, site_id, slot_id, name, format,"
                    " width, height, status, created_at, updated_at) VALUES (:id, :pub, :site,"
                    " :slot, 'Top', 'banner', 300, 250, 'active', now(), now())"
                ),
                {"id": uuid.uuid4(), "pub": profile, "site": site_id, "slot": slot_id},
            )

    slots = Snapshot.of(load(db, CHAIN)).slots

    assert {slot_id: slot.verified for slot_id, slot in slots.items()} == {
        "on-verified": True,
        "on-unverified": False,
        "no-site": False,
    }
