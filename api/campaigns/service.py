"""Advertisers and campaigns: profile, drafts, and the on-chain transactions that register
and fund a campaign. A draft's status follows what the indexer saw on-chain."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from eth_utils import keccak, to_checksum_address
from pydantic import ValidationError
from sqlalchemy import func, text
from sqlmodel import Session, select

from api.campaigns.models import AdvertiserProfile, CampaignDraft, Creative
from api.campaigns.schemas import (
    AdvertiserCreate,
    AdvertiserPublic,
    AdvertiserUpdate,
    CampaignCreate,
    CampaignPublic,
    CampaignStatus,
    CampaignUpdate,
    MaxSpendPublic,
    WithdrawPublic,
)
from api.core.chain import TxData, call_data, chain_time, deployment, payment_token, transaction
from api.core.errors import Conflict, NotFound, Unprocessable
from api.core.settings import Settings
from api.tracking.stream import Keys

ZERO = "0x0000000000000000000000000000000000000000"
ONCHAIN_STATUS = {1: "active", 2: "paused", 3: "ended"}


def find_advertiser(session: Session, wallet: str) -> AdvertiserProfile | None:
    return session.exec(
        select(AdvertiserProfile).where(AdvertiserProfile.wallet == wallet.lower())
    ).first()


def _advertiser(session: Session, wallet: str) -> AdvertiserProfile:
    found = find_advertiser(session, wallet)
    if found is None:
        raise NotFound("this wallet has no advertiser profile yet: create one first")
    return found


def _public_advertiser(profile: AdvertiserProfile) -> AdvertiserPublic:
    return AdvertiserPublic(
        wallet=profile.wallet, company_name=profile.company_name, website_url=profile.website_url
    )


def create_advertiser(session: Session, wallet: str, body: AdvertiserCreate) -> AdvertiserPublic:
    if find_advertiser(session, wallet) is not None:
        raise Conflict("this wallet already has an advertiser profile", code="already_exists")
    profile = AdvertiserProfile(
        wallet=wallet.lower(), company_name=body.company_name, website_url=str(body.website_url)
    )
    session.add(profile)
    session.commit()
    return _public_advertiser(profile)


def read_advertiser(session: Session, wallet: str) -> AdvertiserPublic:
    return _public_advertiser(_advertiser(session, wallet))


def update_advertiser(session: Session, wallet: str, body: AdvertiserUpdate) -> AdvertiserPublic:
    profile = _advertiser(session, wallet)
    if body.company_name is not None:
        profile.company_name = body.company_name
    if body.website_url is not None:
        profile.website_url = str(body.website_url)
    profile.updated_at = datetime.now(UTC)
    session.add(profile)
    session.commit()
    return _public_advertiser(profile)


def metadata_hash(draft: CampaignDraft, cids: list[str]) -> str:
    """keccak256 of the canonical JSON of what the ad server must honour: targeting,
    format, landing page and the creatives' CIDs. It goes on-chain at registration."""
    content = {
        "targeting": draft.targeting,
        "format": draft.format,
        "landing_url": draft.landing_url,
        "creatives": sorted(cids),
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return "0x" + keccak(text=canonical).hex()


def creative_cids(session: Session, draft: CampaignDraft) -> list[str]:
    return list(session.exec(select(Creative.cid).where(Creative.campaign_id == draft.id)))


def _fields(body: CampaignCreate, token: str) -> dict[str, Any]:
    """A validated body as the draft's columns."""
    return {
        "name": body.name,
        "objective": body.objective.value,
        "bid_model": body.bid_model.value,
        "bid": body.bid,
        "token": to_checksum_address(token),
        "total_budget": body.total_budget,
        "max_spend_per_epoch": body.max_spend_per_epoch,
        "targeting": body.targeting.model_dump(),
        "format": body.format.value,
        "landing_url": str(body.landing_url),
        "start_date": body.start_date,
        "end_date": body.end_date,
        "unverified_inventory": body.unverified_inventory,
    }


def _default_token(settings: Settings) -> str:
    return payment_token(settings.chain_id, settings.payment_token)


def own_campaign(session: Session, wallet: str, campaign_id: str) -> CampaignDraft:
    advertiser = _advertiser(session, wallet)
    try:
        key = uuid.UUID(campaign_id)
    except ValueError:
        raise NotFound(f"you have no campaign {campaign_id!r}") from None
    draft = session.exec(
        select(CampaignDraft).where(
            CampaignDraft.id == key, CampaignDraft.advertiser_id == advertiser.id
        )
    ).first()
    if draft is None:  # another advertiser's campaign looks exactly like a missing one
        raise NotFound(f"you have no campaign {campaign_id!r}")
    return draft


def _link(session: Session, chain_id: int, wallet: str, draft: CampaignDraft) -> bool:
    """Find the on-chain campaign a draft was registered as: the advertiser's oldest one
    with the draft's metadata hash that no other draft claims."""
    row = session.execute(
        text(
            "SELECT campaign_id FROM campaigns_onchain WHERE chain_id = :chain"
            " AND advertiser = :advertiser AND metadata_hash = :hash"
            " AND campaign_id NOT IN (SELECT onchain_id FROM campaign_drafts"
            "   WHERE onchain_id IS NOT NULL) ORDER BY campaign_id LIMIT 1"
        ),
        {"chain": chain_id, "advertiser": wallet.lower(), "hash": draft.metadata_hash},
    ).first()
    if row is None:
        return False
    draft.onchain_id = int(row.campaign_id)
    session.add(draft)
    session.commit()
    return True


def link_registered(session: Session, chain_id: int) -> int:
    """Link every draft registered on-chain since it was last looked at; how many."""
    unlinked = session.execute(
        text(
            "SELECT d.id, a.wallet FROM campaign_drafts d"
            " JOIN advertiser_profiles a ON a.id = d.advertiser_id"
            " JOIN campaigns_onchain c ON c.chain_id = :chain AND c.advertiser = a.wallet"
            "  AND c.metadata_hash = d.metadata_hash"
            " WHERE d.onchain_id IS NULL ORDER BY d.created_at"
        ),
        {"chain": chain_id},
    ).all()
    linked = 0
    for draft_id, wallet in unlinked:
        draft = session.get(CampaignDraft, draft_id)
        if draft is not None and draft.onchain_id is None:
            linked += _link(session, chain_id, wallet, draft)
    return linked


def onchain_row(session: Session, settings: Settings, wallet: str, draft: CampaignDraft) -> Any:
    if draft.onchain_id is None and not _link(session, settings.chain_id, wallet, draft):
        return None
    return session.execute(
        text(
            "SELECT c.status, c.bid, c.metadata_hash, coalesce(b.balance, 0) AS balance,"
            " w.amount AS w_amount, w.available_at AS w_available_at, w.status AS w_status,"
            " w.paid AS w_paid, m.max_spend_now, m.max_spend_per_epoch,"
            " m.max_spend_effective_epoch, m.current_epoch FROM campaigns_onchain c"
            " LEFT JOIN campaign_max_spend m ON m.chain_id = c.chain_id"
            "  AND m.campaign_id = c.campaign_id"
            " LEFT JOIN escrow_balances b ON b.chain_id = c.chain_id"
            "  AND b.campaign_id = c.campaign_id"
            " LEFT JOIN withdraw_requests w ON w.chain_id = c.chain_id"
            "  AND w.campaign_id = c.campaign_id"
            " WHERE c.chain_id = :chain AND c.campaign_id = :id"
        ),
        {"chain": settings.chain_id, "id": draft.onchain_id},
    ).first()


def public_campaign(
    session: Session,
    settings: Settings,
    wallet: str,
    draft: CampaignDraft,
    cache: redis.Redis | None = None,
) -> CampaignPublic:
    """The campaign as its owner sees it; with `cache`, servability also weighs the spend
    the ad server has reserved and billed (the escrow's balance and this epoch's max)."""
    onchain = onchain_row(session, settings, wallet, draft)
    balance = int(onchain.balance) if onchain else 0
    withdraw = None
    if onchain is not None and onchain.w_status is not None:
        withdraw = WithdrawPublic(
            amount=int(onchain.w_amount),
            available_at=datetime.fromtimestamp(onchain.w_available_at, UTC),
            status=onchain.w_status,
            paid=int(onchain.w_paid),
        )
    if onchain is None:
        status = "draft"
    elif onchain.status != 1:
        status = ONCHAIN_STATUS.get(onchain.status, "unknown")
    elif balance == 0:
        status = "registered"
    elif draft.start_date and draft.start_date > datetime.now(UTC):
        status = "funded"
    else:
        status = "active"
    spend = _live_spend(cache, settings, draft, onchain)
    blocked = not_servable(draft, onchain, creative_count(session, draft), spend)
    return CampaignPublic(
        id=str(draft.id),
        name=draft.name,
        objective=draft.objective,  # type: ignore[arg-type]
        bid_model=draft.bid_model,  # type: ignore[arg-type]
        bid=int(draft.bid),
        token=draft.token,
        total_budget=int(draft.total_budget),
        max_spend_per_epoch=int(draft.max_spend_per_epoch),
        max_spend=_max_spend(onchain),
        targeting=draft.targeting,
        format=draft.format,  # type: ignore[arg-type]
        landing_url=draft.landing_url,
        start_date=draft.start_date,
        end_date=draft.end_date,
        unverified_inventory=draft.unverified_inventory,
        metadata_hash=draft.metadata_hash,
        status=status,
        servable=blocked is None,
        not_servable_reason=blocked[0] if blocked else None,
        not_servable_message=blocked[1] if blocked else None,
        onchain_id=draft.onchain_id,
        escrow_balance=balance,
        onchain_bid=int(onchain.bid) if onchain else None,
        pending_update=onchain is not None and not _matches_chain(draft, onchain),
        withdraw=withdraw,
    )


def creative_count(session: Session, draft: CampaignDraft) -> int:
    return int(
        session.exec(
            select(func.count()).select_from(Creative).where(Creative.campaign_id == draft.id)
        ).one()
    )


@dataclass(frozen=True)
class LiveSpend:
    """What the ad server holds against a campaign in Redis, not settled yet."""

    reserved: int
    billed: int
    this_epoch: int  # reserved or billed in the current escrow epoch


def _live_spend(
    cache: redis.Redis | None, settings: Settings, draft: CampaignDraft, onchain: Any
) -> LiveSpend | None:
    if cache is None or onchain is None or draft.onchain_id is None:
        return None
    keys = Keys(draft.onchain_id, settings.tracking_shards)
    epoch = onchain.current_epoch
    names = [keys.reserved, keys.billed]
    if epoch is not None:
        names.append(keys.epoch(int(epoch)))
    try:
        values = [int(v or 0) for v in cache.mget(names)]
    except redis.RedisError:
        return None  # servability then goes by what Postgres knows
    return LiveSpend(values[0], values[1], values[2] if epoch is not None else 0)


def one_event_price(bid_model: str, bid: int) -> int:
    """What one billable event costs: an impression (CPM, rounded up) or a click (CPC)."""
    return -(-bid // 1000) if bid_model == "cpm" else bid


def not_servable(
    draft: CampaignDraft, onchain: Any, creatives: int, spend: LiveSpend | None
) -> tuple[str, str] | None:
    """Why the ad server would not show the campaign now, as (code, sentence), the first
    that applies in the order an advertiser would fix them; None when it can serve."""
    now = datetime.now(UTC)
    if creatives == 0:
        if onchain is None:
            return "no_creative", "It has no creative: upload one before registering it."
        return (
            "no_creative",
            "It was registered without a creative, and creatives cannot be added after"
            " registration: end it and build a new campaign with a creative.",
        )
    if onchain is None:
        return "not_registered", "It is not registered on-chain yet."
    state = ONCHAIN_STATUS.get(onchain.status)
    if state == "ended":
        return "ended", "It has ended."
    if draft.end_date and _aware(draft.end_date) <= now:
        return "ended", "Its end date has passed."
    if state == "paused":
        return "paused", "It is paused: resume it to serve."
    if onchain.w_status == "pending":
        return (
            "withdraw_pending",
            "A withdraw request is pending: serving stops until it is withdrawn or cancelled.",
        )
    if not _matches_chain(draft, onchain):
        return (
            "pending_update",
            "It was edited since registration: sign the metadata transaction to serve again.",
        )
    if int(onchain.balance) == 0:
        return "no_escrow_balance", "Its escrow balance is empty: fund it to serve."
    if draft.start_date and _aware(draft.start_date) > now:
        return "not_started", "Its start date has not come yet."
    price = one_event_price(draft.bid_model, int(onchain.bid))
    if spend is not None and int(onchain.balance) - spend.billed - spend.reserved < price:
        return (
            "budget_spent",
            "Its escrow balance is spent on events awaiting settlement: fund it to serve.",
        )
    in_force = onchain.max_spend_now
    if in_force is not None and spend is not None and spend.this_epoch + price > int(in_force):
        return (
            "epoch_budget_spent",
            "Its max spend for this epoch is reached: it serves again next epoch.",
        )
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _max_spend(onchain: Any) -> MaxSpendPublic | None:
    if onchain is None or onchain.max_spend_now is None:
        return None
    return MaxSpendPublic(
        in_force=int(onchain.max_spend_now),
        newest=int(onchain.max_spend_per_epoch),
        effective_epoch=int(onchain.max_spend_effective_epoch),
    )


def _matches_chain(draft: CampaignDraft, onchain: Any) -> bool:
    return onchain.metadata_hash == draft.metadata_hash and int(onchain.bid) == int(draft.bid)


def create_campaign(
    session: Session, settings: Settings, wallet: str, body: CampaignCreate
) -> CampaignPublic:
    advertiser = _advertiser(session, wallet)
    fields = _fields(body, body.token or _default_token(settings))
    draft = CampaignDraft(advertiser_id=advertiser.id, metadata_hash="", **fields)
    draft.metadata_hash = metadata_hash(draft, [])
    session.add(draft)
    session.commit()
    return public_campaign(session, settings, wallet, draft)


def list_campaigns(
    session: Session, settings: Settings, wallet: str, cache: redis.Redis | None = None
) -> list[CampaignPublic]:
    advertiser = _advertiser(session, wallet)
    drafts = session.exec(
        select(CampaignDraft)
        .where(CampaignDraft.advertiser_id == advertiser.id)
        .order_by(CampaignDraft.created_at)  # type: ignore[arg-type]
    ).all()
    return [public_campaign(session, settings, wallet, d, cache) for d in drafts]


def read_campaign(
    session: Session,
    settings: Settings,
    wallet: str,
    campaign_id: str,
    cache: redis.Redis | None = None,
) -> CampaignPublic:
    draft = own_campaign(session, wallet, campaign_id)
    return public_campaign(session, settings, wallet, draft, cache)


def delete_campaign(session: Session, settings: Settings, wallet: str, campaign_id: str) -> None:
    draft = own_campaign(session, wallet, campaign_id)
    if onchain_row(session, settings, wallet, draft) is not None:
        raise Conflict("a campaign registered on-chain cannot be deleted; end it instead")
    session.delete(draft)
    session.commit()


def registration_tx(session: Session, settings: Settings, wallet: str, campaign_id: str) -> TxData:
    draft = own_campaign(session, wallet, campaign_id)
    if onchain_row(session, settings, wallet, draft) is not None:
        raise Conflict("this campaign is already registered on-chain")
    if creative_count(session, draft) == 0:
        # the creatives are part of the metadata hash the chain records: none can be added later
        raise Conflict(
            "upload a creative first: a campaign registered without one could never serve,"
            " and creatives cannot be added after registration",
            {"field": "creative"},
            code="no_creative",
        )
    return transaction(
        settings.chain_id,
        "CampaignRegistry",
        "register",
        draft.token,
        0 if draft.bid_model == "cpm" else 1,
        int(draft.bid),
        bytes.fromhex(draft.metadata_hash[2:]),
        int(draft.max_spend_per_epoch),
        description=f"Register campaign {draft.name!r}"
        f" (at most {int(draft.max_spend_per_epoch)} per epoch)",
    )


def funding_txs(
    session: Session, settings: Settings, wallet: str, campaign_id: str, amount: int
) -> list[TxData]:
    """approve + deposit for a token; deposit with value for ETH."""
    draft = own_campaign(session, wallet, campaign_id)
    if onchain_row(session, settings, wallet, draft) is None:
        raise Conflict("register the campaign on-chain before funding it", code="not_registered")
    assert draft.onchain_id is not None
    escrow = deployment(settings.chain_id).address("PaymentEscrow")
    deposit = transaction(
        settings.chain_id,
        "PaymentEscrow",
        "deposit",
        draft.onchain_id,
        amount,
        draft.token,
        value=amount if draft.token == ZERO else 0,
        description=f"Deposit {amount} into campaign {draft.onchain_id}",
    )
    if draft.token == ZERO:
        return [deposit]
    approve = TxData(
        to=draft.token,
        data=call_data("TestUSDC", "approve", escrow, amount),  # any ERC-20's approve
        chainId=settings.chain_id,
        description=f"Allow the escrow to take {amount}",
    )
    return [approve, deposit]


FIXED_AT_REGISTRATION = ("token", "bid_model")
STATUS_CODE = {CampaignStatus.active: 1, CampaignStatus.paused: 2, CampaignStatus.ended: 3}


def update_campaign(
    session: Session, settings: Settings, wallet: str, campaign_id: str, body: CampaignUpdate
) -> CampaignPublic:
    """Edit a campaign; the merged result passes the same checks as a new one. Registered
    campaigns keep their token and bid model; other on-chain fields wait for `metadata-tx`."""
    draft = own_campaign(session, wallet, campaign_id)
    changes = body.model_dump(exclude_unset=True)
    onchain = onchain_row(session, settings, wallet, draft)
    if onchain is not None:
        if ONCHAIN_STATUS.get(onchain.status) == "ended":
            raise Conflict("an ended campaign cannot be changed", code="campaign_ended")
        fixed = [f for f in FIXED_AT_REGISTRATION if f in changes]
        if fixed:
            raise Conflict(
                f"{', '.join(fixed)} cannot change once the campaign is registered on-chain",
                code="fixed_at_registration",
            )
        if "max_spend_per_epoch" in changes:
            raise Conflict(
                "a registered campaign's max spend per epoch is changed on-chain:"
                " sign the max-spend-tx",
                code="set_on_chain",
            )
    current = {name: getattr(draft, name) for name in CampaignCreate.model_fields}
    try:
        merged = CampaignCreate.model_validate({**current, **changes})
    except ValidationError as exc:
        problems = [
            {"field": ".".join(["body", *map(str, e["loc"])]).rstrip("."), "problem": e["msg"]}
            for e in exc.errors()
        ]
        raise Unprocessable("the campaign would not be valid", {"problems": problems}) from None
    for name, value in _fields(merged, merged.token or draft.token).items():
        setattr(draft, name, value)
    draft.metadata_hash = metadata_hash(draft, creative_cids(session, draft))
    draft.updated_at = datetime.now(UTC)
    session.add(draft)
    session.commit()
    return public_campaign(session, settings, wallet, draft)


def _registered(
    session: Session, settings: Settings, wallet: str, campaign_id: str
) -> tuple[CampaignDraft, Any]:
    draft = own_campaign(session, wallet, campaign_id)
    onchain = onchain_row(session, settings, wallet, draft)
    if onchain is None:
        raise Conflict("register the campaign on-chain first", code="not_registered")
    return draft, onchain


def metadata_tx(session: Session, settings: Settings, wallet: str, campaign_id: str) -> TxData:
    """`CampaignRegistry.update_metadata` with the edited bid and metadata hash."""
    draft, onchain = _registered(session, settings, wallet, campaign_id)
    if _matches_chain(draft, onchain):
        raise Conflict("the chain already records this bid and metadata", code="no_change")
    if ONCHAIN_STATUS.get(onchain.status) == "ended":
        raise Conflict("an ended campaign cannot be changed", code="campaign_ended")
    return transaction(
        settings.chain_id,
        "CampaignRegistry",
        "update_metadata",
        draft.onchain_id,
        int(draft.bid),
        bytes.fromhex(draft.metadata_hash[2:]),
        description=f"Update campaign {draft.onchain_id}: bid {int(draft.bid)} and targeting",
    )


def max_spend_tx(
    session: Session, settings: Settings, wallet: str, campaign_id: str, new_max: int
) -> TxData:
    """`CampaignRegistry.set_max_spend_per_epoch`: the new max applies from the next epoch;
    the current one keeps the max it started with."""
    draft, onchain = _registered(session, settings, wallet, campaign_id)
    if ONCHAIN_STATUS.get(onchain.status) == "ended":
        raise Conflict("an ended campaign cannot be changed", code="campaign_ended")
    if int(onchain.max_spend_per_epoch) == new_max:
        pending = _max_spend(onchain)
        raise Conflict(
            f"the max spend per epoch is already set to {new_max}",
            {"max_spend": pending.model_dump() if pending else None},
            code="no_change",
        )
    return transaction(
        settings.chain_id,
        "CampaignRegistry",
        "set_max_spend_per_epoch",
        draft.onchain_id,
        new_max,
        description=f"Set campaign {draft.onchain_id}'s max spend to {new_max} per epoch,"
        " from the next epoch",
    )


def status_tx(
    session: Session, settings: Settings, wallet: str, campaign_id: str, status: CampaignStatus
) -> TxData:
    """Resume, pause or end (ending is final)."""
    draft, onchain = _registered(session, settings, wallet, campaign_id)
    current = ONCHAIN_STATUS.get(onchain.status)
    if current == "ended":
        raise Conflict("an ended campaign stays ended", code="campaign_ended")
    if current == status.value:
        raise Conflict(f"the campaign is already {current}", code="no_change")
    verb = {"active": "Resume", "paused": "Pause", "ended": "End"}[status.value]
    return transaction(
        settings.chain_id,
        "CampaignRegistry",
        "update_status",
        draft.onchain_id,
        STATUS_CODE[status],
        description=f"{verb} campaign {draft.onchain_id}",
    )


def withdraw_request_tx(
    session: Session, settings: Settings, wallet: str, campaign_id: str, amount: int
) -> TxData:
    """Ask for unspent budget back; the campaign stops serving while the request is pending,
    and the money can be taken after the escrow's delay (settlement may spend some first)."""
    draft, onchain = _registered(session, settings, wallet, campaign_id)
    if amount > int(onchain.balance):
        raise Conflict(
            f"the escrow holds {int(onchain.balance)} for this campaign, less than {amount}",
            code="above_balance",
        )
    return transaction(
        settings.chain_id,
        "PaymentEscrow",
        "request_withdraw",
        draft.onchain_id,
        draft.token,
        amount,
        description=f"Request to withdraw {amount} from campaign {draft.onchain_id}",
    )


def _pending_withdraw(onchain: Any) -> None:
    if onchain.w_status != "pending":
        raise Conflict("this campaign has no pending withdraw request", code="no_pending_withdraw")


def withdraw_cancel_tx(
    session: Session, settings: Settings, wallet: str, campaign_id: str
) -> TxData:
    draft, onchain = _registered(session, settings, wallet, campaign_id)
    _pending_withdraw(onchain)
    return transaction(
        settings.chain_id,
        "PaymentEscrow",
        "cancel_withdraw",
        draft.onchain_id,
        draft.token,
        description=f"Cancel the withdraw request of campaign {draft.onchain_id}",
    )


def withdraw_tx(session: Session, settings: Settings, wallet: str, campaign_id: str) -> TxData:
    draft, onchain = _registered(session, settings, wallet, campaign_id)
    _pending_withdraw(onchain)
    if chain_time(settings.rpc_url) < int(onchain.w_available_at):
        available = datetime.fromtimestamp(onchain.w_available_at, UTC)
        raise Conflict(
            f"the withdraw delay is not over: available at {available.isoformat()}",
            {"available_at": available.isoformat()},
            code="withdraw_not_ready",
        )
    return transaction(
        settings.chain_id,
        "PaymentEscrow",
        "withdraw",
        draft.onchain_id,
        draft.token,
        description=f"Withdraw from campaign {draft.onchain_id}",
    )
