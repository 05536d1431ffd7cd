"""`/api/v1/privacy`: export everything we hold off-chain for the signed-in wallet, or
delete it. What is on-chain is listed and explained, never hidden: it cannot be deleted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from sqlmodel import Session, col, select

from api.campaigns.models import AdvertiserProfile, CampaignDraft, Creative
from api.campaigns.service import ONCHAIN_STATUS, find_advertiser, onchain_row
from api.core.db import SessionDep
from api.deps import SettingsDep, WalletDep, WalletLimited
from api.publishers.models import AdSlot, PublisherProfile, PublisherSite
from api.publishers.service import find_profile, onchain_status

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy"], dependencies=[WalletLimited])

ONCHAIN_NOTE = (
    "Registrations, verified domains, quality scores, campaign budgets and payouts are "
    "recorded on a public blockchain. They are part of the export, but deleting your data "
    "here cannot remove them: nobody can."
)


def _campaigns(session: Session, advertiser: AdvertiserProfile | None) -> list[CampaignDraft]:
    if advertiser is None:
        return []
    return list(
        session.exec(select(CampaignDraft).where(CampaignDraft.advertiser_id == advertiser.id))
    )


def _creatives(session: Session, drafts: list[CampaignDraft]) -> list[Creative]:
    ids = [d.id for d in drafts]
    if not ids:
        return []
    return list(session.exec(select(Creative).where(col(Creative.campaign_id).in_(ids))))


MONEY = ("bid", "total_budget", "max_spend_per_epoch")


def _draft_json(draft: CampaignDraft) -> dict[str, Any]:
    """A draft as JSON, its amounts as exact integers (atomic units)."""
    data = draft.model_dump(mode="json", exclude=set(MONEY))
    for name in MONEY:
        value = getattr(draft, name)
        data[name] = None if value is None else int(value)
    return data


def _profile_json(profile: PublisherProfile) -> dict[str, Any]:
    data = profile.model_dump(mode="json", exclude={"push_threshold"})
    data["push_threshold"] = int(profile.push_threshold)  # atomic units, exact
    return data


@router.get("/export")
def export(wallet: WalletDep, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Every off-chain record of the wallet, as JSON, plus what the chain holds about it."""
    profile = find_profile(session, wallet)
    slots = (
        session.exec(select(AdSlot).where(AdSlot.publisher_id == profile.id)).all()
        if profile
        else []
    )
    sites = (
        session.exec(select(PublisherSite).where(PublisherSite.publisher_id == profile.id)).all()
        if profile
        else []
    )
    advertiser = find_advertiser(session, wallet)
    drafts = _campaigns(session, advertiser)
    campaigns_onchain = session.execute(
        text(
            "SELECT campaign_id, status, bid, metadata_hash FROM campaigns_onchain"
            " WHERE chain_id = :chain AND advertiser = :wallet ORDER BY campaign_id"
        ),
        {"chain": settings.chain_id, "wallet": wallet.lower()},
    )
    return {
        "wallet": wallet,
        "off_chain": {
            "publisher_profile": _profile_json(profile) if profile else None,
            "sites": [site.model_dump(mode="json") for site in sites],
            "ad_slots": [slot.model_dump(mode="json") for slot in slots],
            "advertiser_profile": advertiser.model_dump(mode="json") if advertiser else None,
            "campaigns": [_draft_json(d) for d in drafts],
            "creatives": [c.model_dump(mode="json") for c in _creatives(session, drafts)],
        },
        "on_chain": {
            "publisher": onchain_status(session, settings.chain_id, wallet).model_dump(),
            "campaigns": [
                {
                    "campaign_id": int(row.campaign_id),
                    "status": row.status,
                    "bid": str(row.bid),
                    "metadata_hash": row.metadata_hash,
                }
                for row in campaigns_onchain
            ],
            "note": ONCHAIN_NOTE,
        },
    }


@router.delete("/data")
def delete(
    wallet: WalletDep, session: SessionDep, settings: SettingsDep, request: Request
) -> dict[str, Any]:
    """Delete the wallet's off-chain data: publisher profile, sites and slots; advertiser profile,
    campaigns and creatives, except the campaigns still live on-chain (registered and not
    ended), which the ad server needs to serve what the advertiser paid for: end them, then
    delete again."""
    storage = request.app.state.storage
    profile = find_profile(session, wallet)
    removed = dict.fromkeys(
        ("publisher_profile", "sites", "ad_slots", "advertiser_profile", "campaigns", "creatives"),
        0,
    )
    if profile is not None:
        for slot in session.exec(select(AdSlot).where(AdSlot.publisher_id == profile.id)).all():
            session.delete(slot)
            removed["ad_slots"] += 1
        session.flush()
        owned = select(PublisherSite).where(PublisherSite.publisher_id == profile.id)
        for site in session.exec(owned).all():
            session.delete(site)
            removed["sites"] += 1
        session.flush()
        session.delete(profile)
        removed["publisher_profile"] = 1
    advertiser = find_advertiser(session, wallet)
    kept = []
    gone_cids = set()
    for draft in _campaigns(session, advertiser):
        onchain = onchain_row(session, settings, wallet, draft)
        if onchain is not None and ONCHAIN_STATUS.get(onchain.status) != "ended":
            kept.append(str(draft.id))
            continue
        for creative in _creatives(session, [draft]):
            gone_cids.add(creative.cid)
            session.delete(creative)
            removed["creatives"] += 1
        session.flush()
        session.delete(draft)
        removed["campaigns"] += 1
    if advertiser is not None and not kept:
        session.flush()
        session.delete(advertiser)
        removed["advertiser_profile"] = 1
    session.commit()
    still_used = set(session.exec(select(Creative.cid).where(col(Creative.cid).in_(gone_cids))))
    for cid in gone_cids - still_used:  # the same bytes may belong to another campaign
        storage.delete(cid)
    return {"deleted": removed, "kept_live_campaigns": kept, "kept_on_chain": ONCHAIN_NOTE}
