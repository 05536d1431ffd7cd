"""Ad slots of the signed-in publisher, and the code that puts one on a page."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from sqlmodel import Session, select

from api.core.errors import NotFound
from api.publishers.models import AdSlot, PublisherProfile
from api.publishers.schemas import IntegrationCode, SlotCreate, SlotPublic, SlotUpdate
from api.publishers.service import own_site, profile_of


def public(slot: AdSlot) -> SlotPublic:
    return SlotPublic.model_validate(
        {**slot.model_dump(), "site_id": str(slot.site_id) if slot.site_id else None}
    )


def _own_slot(session: Session, profile: PublisherProfile, slot_id: str) -> AdSlot:
    # another publisher's slot is indistinguishable from a missing one
    slot = session.exec(
        select(AdSlot).where(AdSlot.slot_id == slot_id, AdSlot.publisher_id == profile.id)
    ).first()
    if slot is None:
        raise NotFound(f"you have no slot {slot_id!r}")
    return slot


def create(session: Session, wallet: str, body: SlotCreate) -> SlotPublic:
    profile = profile_of(session, wallet)
    site = own_site(session, profile, body.site_id)
    slot = AdSlot(
        publisher_id=profile.id,
        site_id=site.id,
        slot_id="slot_" + secrets.token_hex(8),
        **body.model_dump(mode="json", exclude={"site_id"}),
    )
    session.add(slot)
    session.commit()
    session.refresh(slot)
    return public(slot)


def list_slots(session: Session, wallet: str) -> list[SlotPublic]:
    profile = profile_of(session, wallet)
    slots = session.exec(
        select(AdSlot).where(AdSlot.publisher_id == profile.id).order_by(AdSlot.created_at)  # type: ignore[arg-type]
    ).all()
    return [public(slot) for slot in slots]


def read(session: Session, wallet: str, slot_id: str) -> SlotPublic:
    return public(_own_slot(session, profile_of(session, wallet), slot_id))


def update(session: Session, wallet: str, slot_id: str, body: SlotUpdate) -> SlotPublic:
    slot = _own_slot(session, profile_of(session, wallet), slot_id)
    for field, value in body.model_dump(mode="json", exclude_unset=True).items():
        setattr(slot, field, value)
    slot.updated_at = datetime.now(UTC)
    session.add(slot)
    session.commit()
    session.refresh(slot)
    return public(slot)


def delete(session: Session, wallet: str, slot_id: str) -> None:
    slot = _own_slot(session, profile_of(session, wallet), slot_id)
    session.delete(slot)
    session.commit()


def page_snippet(
    slot_id: str, pub_id: str, fmt: str, width: int, height: int, api_base: str
) -> str:
    """The HTML a publisher pastes into a page: a box of the slot's size, filled from
    `GET /x402/ad` with the ad linked to its click URL and its impression beaconed once the
    creative has loaded."""
    config = json.dumps(
        {"pub_id": pub_id, "slot_id": slot_id, "format": fmt, "api": api_base.rstrip("/")}
    )
    size = f"width:{width}px;height:{height}px"
    return f"""<div id="buzzer-{slot_id}" style="{size}"></div>
<script>
(function (c) {{
  var box = document.getElementById("buzzer-" + c.slot_id);
  var q = new URLSearchParams({{pub_id: c.pub_id, slot_id: c.slot_id, format: c.format}});
  fetch(c.api + "/x402/ad?" + q, {{credentials: "omit"}}).then(function (r) {{
    if (r.status !== 200) return;
    return r.json().then(function (ad) {{
      var a = document.createElement("a");
      a.href = ad.click_url; a.rel = "sponsored noopener"; a.target = "_blank";
      var img = document.createElement("img");
      img.src = ad.creative_url; img.width = ad.width; img.height = ad.height; img.alt = "Ad";
      img.onload = function () {{ navigator.sendBeacon(ad.impression_url); }};
      a.appendChild(img); box.appendChild(a);
    }});
  }});
}})({config});
</script>"""


def integration(
    session: Session, wallet: str, slot_id: str, api_base: str, pub_id: str | None
) -> IntegrationCode:
    slot = _own_slot(session, profile_of(session, wallet), slot_id)
    base = api_base.rstrip("/")
    params = {"pub_id": pub_id or "<register on-chain first>", "slot_id": slot.slot_id}
    html = page_snippet(slot.slot_id, params["pub_id"], slot.format, slot.width, slot.height, base)
    server_relay = f'''# Agents calling your own server: relay Buzzer's x402 answer, and
# serve the page without ads only for a receipt Buzzer signed for this slot (and page).
# (Checking locally instead: PyJWT and {base}/.well-known/jwks.json, see Buzzer's docs.)
import httpx

BUZZER = "{base}"
PARAMS = {json.dumps({**params, "format": slot.format})}


def buzzer_ad(payment_header: str | None = None,
              page: str | None = None) -> tuple[int, dict, dict]:
    """(status, headers, body): 200 with an ad or a paid receipt, 402 with the x402
    PAYMENT-REQUIRED header to pass on unchanged, or 204 when there is nothing to show."""
    headers = {{"PAYMENT-SIGNATURE": payment_header}} if payment_header else {{}}
    query = {{**PARAMS, **({{"page": page}} if page else {{}})}}
    reply = httpx.get(BUZZER + "/x402/ad", params=query, headers=headers)
    relayed = {{k: v for k, v in reply.headers.items()
               if k.lower() in ("payment-required", "payment-response", "x-buzzer-receipt",
                                "retry-after")}}
    return reply.status_code, relayed, (reply.json() if reply.content else {{}})


def check_receipt(receipt: str, page: str | None = None) -> dict | None:
    """What the receipt grants on this slot (payer, case, valid_until, ...), or None when
    Buzzer refuses it: forged, tampered with, expired, or for another slot or page."""
    body = {{"receipt": receipt, "slot_id": PARAMS["slot_id"]}}
    if page:
        body["page"] = page
    reply = httpx.post(BUZZER + "/x402/receipts/verify", json=body)
    return reply.json() if reply.status_code == 200 else None


def agent_access(payment_header: str | None = None, receipt: str | None = None,
                 page: str | None = None) -> tuple[bool, int, dict, dict]:
    """(serve the page without ads?, status, headers, body) for an agent's request: a
    receipt it presents (its X-Buzzer-Receipt header) is checked first, without paying;
    else its payment is relayed, and the receipt Buzzer answers is checked too."""
    if receipt:
        grant = check_receipt(receipt, page)
        if grant is not None:
            return True, 200, {{"X-Buzzer-Receipt": receipt}}, grant
    status, headers, body = buzzer_ad(payment_header, page)
    paid = status == 200 and "receipt" in body and check_receipt(body["receipt"], page)
    return bool(paid), status, headers, body
'''
    return IntegrationCode(html=html, server_relay=server_relay)
