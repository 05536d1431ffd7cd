"""Pages: the demo publisher page, `/demo?slot=<slot_id>`: an article of a made-up publisher
with the slot's integration snippet pasted in exactly as its publisher would paste it (the
code of `GET /api/v1/publishers/me/slots/{id}/integration`, made for the slot's owner), so the
ad comes from `/x402/ad`, its impression is sent by the snippet and a click goes through
`/track/click/…`. `make run` serves it; the site must count as verified for ads to fill
(`BUZZER_DEV_TRUST_SITES=1` locally)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlmodel import Session, select

from api.core.db import SessionDep
from api.core.settings import Settings
from api.publishers import service, slots
from api.publishers.models import AdSlot, PublisherProfile
from api.web.core import render

router = APIRouter(include_in_schema=False)

MAX_SLOT_ID = 64


def owner_of(session: Session, slot_id: str) -> str | None:
    """The wallet of the publisher a slot belongs to, or None for no such slot."""
    return session.exec(
        select(PublisherProfile.wallet)
        .join(AdSlot, AdSlot.publisher_id == PublisherProfile.id)  # type: ignore[arg-type]
        .where(AdSlot.slot_id == slot_id)
    ).first()


@router.get("/demo")
def demo(request: Request, session: SessionDep, slot: str = "") -> Response:
    settings: Settings = request.app.state.settings
    slot_id = slot.strip()[:MAX_SLOT_ID]
    wallet = owner_of(session, slot_id) if slot_id else None
    if wallet is None:
        context = {"slot_id": slot_id, "missing": bool(slot_id)}
        return render(request, "demo/article.html", context, status=404 if slot_id else 200)
    onchain = service.onchain_status(session, settings.chain_id, wallet)
    code = slots.integration(session, wallet, slot_id, settings.public_url("/"), onchain.pub_id)
    shown = slots.read(session, wallet, slot_id)
    context = {
        "slot_id": slot_id,
        "snippet": code.html,
        "slot": shown,
        "registered": onchain.registered,
        "suspended": bool(onchain.suspended),
    }
    return render(request, "demo/article.html", context)
