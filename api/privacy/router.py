"""`/api/v1/privacy`: export everything we hold off-chain for the signed-in wallet, or
delete it. What is on-chain is listed and explained, never hidden: it cannot be deleted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import select

from api.core.db import SessionDep
from api.deps import SettingsDep, WalletDep, WalletLimited
from api.publishers.models import AdSlot
from api.publishers.service import find_profile, onchain_status

router = APIRouter(prefix="/api/v1/privacy", tags=["privacy"], dependencies=[WalletLimited])

ONCHAIN_NOTE = (
    "Registrations, verified domains, quality scores, campaign budgets and payouts are "
    "recorded on a public blockchain. They are part of the export, but deleting your data "
    "here cannot remove them: nobody can."
)


@router.get("/export")
def export(wallet: WalletDep, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Every off-chain record of the wallet, as JSON, plus what the chain holds about it."""
    profile = find_profile(session, wallet)
    slots = (
        session.exec(select(AdSlot).where(AdSlot.publisher_id == profile.id)).all()
        if profile
        else []
    )
    return {
        "wallet": wallet,
        "off_chain": {
            "publisher_profile": profile.model_dump(mode="json") if profile else None,
            "ad_slots": [slot.model_dump(mode="json") for slot in slots],
        },
        "on_chain": {
            "publisher": onchain_status(session, settings.chain_id, wallet).model_dump(),
            "note": ONCHAIN_NOTE,
        },
    }


@router.delete("/data")
def delete(wallet: WalletDep, session: SessionDep) -> dict[str, Any]:
    """Delete the wallet's off-chain data: profile and slots."""
    profile = find_profile(session, wallet)
    removed = {"publisher_profile": 0, "ad_slots": 0}
    if profile is not None:
        for slot in session.exec(select(AdSlot).where(AdSlot.publisher_id == profile.id)).all():
            session.delete(slot)
            removed["ad_slots"] += 1
        session.flush()
        session.delete(profile)
        removed["publisher_profile"] = 1
        session.commit()
    return {"deleted": removed, "kept_on_chain": ONCHAIN_NOTE}
