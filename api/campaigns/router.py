"""`/api/v1/advertisers` and `/api/v1/campaigns`: the signed-in wallet's own only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, UploadFile, status

from api.campaigns import creatives, service
from api.campaigns.schemas import (
    AdvertiserCreate,
    AdvertiserPublic,
    AdvertiserUpdate,
    CampaignCreate,
    CampaignPublic,
    CampaignUpdate,
    CreativePublic,
    FundingIn,
    MaxSpendIn,
    StatusIn,
    WithdrawIn,
)
from api.core.chain import TxData
from api.core.db import SessionDep
from api.core.errors import NotFound, PayloadTooLarge
from api.deps import CacheDep, SettingsDep, WalletDep, WalletLimited
from api.settlement.schemas import CampaignSpend
from api.settlement.service import campaign_spend

advertisers = APIRouter(
    prefix="/api/v1/advertisers", tags=["advertisers"], dependencies=[WalletLimited]
)
campaigns = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"], dependencies=[WalletLimited])


@advertisers.post("", response_model=AdvertiserPublic, status_code=status.HTTP_201_CREATED)
def create_advertiser(
    body: AdvertiserCreate, wallet: WalletDep, session: SessionDep
) -> AdvertiserPublic:
    return service.create_advertiser(session, wallet, body)


@advertisers.get("/me", response_model=AdvertiserPublic)
def read_advertiser(wallet: WalletDep, session: SessionDep) -> AdvertiserPublic:
    return service.read_advertiser(session, wallet)


@advertisers.patch("/me", response_model=AdvertiserPublic)
def update_advertiser(
    body: AdvertiserUpdate, wallet: WalletDep, session: SessionDep
) -> AdvertiserPublic:
    return service.update_advertiser(session, wallet, body)


@campaigns.post("", response_model=CampaignPublic, status_code=status.HTTP_201_CREATED)
def create_campaign(
    body: CampaignCreate, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> CampaignPublic:
    """A campaign draft; register and fund it on-chain with the transactions below."""
    return service.create_campaign(session, settings, wallet, body)


@campaigns.get("", response_model=list[CampaignPublic])
def list_campaigns(
    wallet: WalletDep, session: SessionDep, settings: SettingsDep, cache: CacheDep
) -> list[CampaignPublic]:
    return service.list_campaigns(session, settings, wallet, cache)


@campaigns.get("/{campaign_id}", response_model=CampaignPublic)
def read_campaign(
    campaign_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep, cache: CacheDep
) -> CampaignPublic:
    """The campaign, with whether the ad server can show it now and why not."""
    return service.read_campaign(session, settings, wallet, campaign_id, cache)


@campaigns.get("/{campaign_id}/spend", response_model=list[CampaignSpend])
def read_spend(
    campaign_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> list[CampaignSpend]:
    """What settlement charged the campaign, epoch by epoch (newest first): what its verified
    events came to, what was asked of the escrow and what it charged, the rest written off."""
    draft = service.own_campaign(session, wallet, campaign_id)
    if draft.onchain_id is None:
        return []
    return campaign_spend(session, settings.chain_id, draft.onchain_id)


@campaigns.patch("/{campaign_id}", response_model=CampaignPublic)
def update_campaign(
    campaign_id: str,
    body: CampaignUpdate,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
) -> CampaignPublic:
    """Edit a campaign. After registration, a new bid, targeting, format or landing page
    takes effect once the `metadata-tx` is signed; token and bid model are fixed."""
    return service.update_campaign(session, settings, wallet, campaign_id, body)


@campaigns.delete("/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_campaign(
    campaign_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Delete a draft (a campaign registered on-chain can only be ended)."""
    service.delete_campaign(session, settings, wallet, campaign_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@campaigns.post("/{campaign_id}/registration-tx", response_model=TxData)
def registration_tx(
    campaign_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """`CampaignRegistry.register(...)` for the advertiser's wallet to sign; 409 `no_creative`
    until a creative is uploaded (the metadata hash fixes the creatives at registration)."""
    return service.registration_tx(session, settings, wallet, campaign_id)


@campaigns.post("/{campaign_id}/funding-txs", response_model=list[TxData])
def funding_txs(
    campaign_id: str, body: FundingIn, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> list[TxData]:
    """approve + deposit (or a deposit with value for ETH), to sign in order."""
    return service.funding_txs(session, settings, wallet, campaign_id, body.amount)


@campaigns.post("/{campaign_id}/metadata-tx", response_model=TxData)
def metadata_tx(
    campaign_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """`CampaignRegistry.update_metadata`: puts an edited bid and targeting on-chain."""
    return service.metadata_tx(session, settings, wallet, campaign_id)


@campaigns.post("/{campaign_id}/max-spend-tx", response_model=TxData)
def max_spend_tx(
    campaign_id: str,
    body: MaxSpendIn,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
) -> TxData:
    """`CampaignRegistry.set_max_spend_per_epoch`: a new max spend per epoch, in force from
    the next epoch (the campaign's `max_spend` shows what applies now and what is pending)."""
    return service.max_spend_tx(session, settings, wallet, campaign_id, body.max_spend_per_epoch)


@campaigns.post("/{campaign_id}/status-tx", response_model=TxData)
def status_tx(
    campaign_id: str, body: StatusIn, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """Pause, resume (`active`) or end a registered campaign; ending is final."""
    return service.status_tx(session, settings, wallet, campaign_id, body.status)


@campaigns.post("/{campaign_id}/withdraw-request-tx", response_model=TxData)
def withdraw_request_tx(
    campaign_id: str,
    body: WithdrawIn,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
) -> TxData:
    """Ask for unspent budget back. Serving stops while it is pending; the money can be
    withdrawn after the escrow's delay, less whatever settlement spends meanwhile."""
    return service.withdraw_request_tx(session, settings, wallet, campaign_id, body.amount)


@campaigns.post("/{campaign_id}/withdraw-cancel-tx", response_model=TxData)
def withdraw_cancel_tx(
    campaign_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """Drop the pending withdraw request; the campaign serves again."""
    return service.withdraw_cancel_tx(session, settings, wallet, campaign_id)


@campaigns.post("/{campaign_id}/withdraw-tx", response_model=TxData)
def withdraw_tx(
    campaign_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """Take the matured withdraw request's money back to the advertiser's wallet."""
    return service.withdraw_tx(session, settings, wallet, campaign_id)


@campaigns.post(
    "/{campaign_id}/creatives", response_model=CreativePublic, status_code=status.HTTP_201_CREATED
)
async def upload_creative(
    campaign_id: str,
    file: UploadFile,
    request: Request,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
) -> CreativePublic:
    """Upload an image (≤ 1 MB; banners in a standard size) or a video (≤ 10 MB)."""
    data = await file.read(creatives.VIDEO_LIMIT + 1)
    if len(data) > creatives.VIDEO_LIMIT:
        raise PayloadTooLarge("a creative is at most 10 MB (video) or 1 MB (image)")
    stored = creatives.upload(
        session, settings, request.app.state.storage, wallet, campaign_id, data
    )
    return CreativePublic(
        cid=stored.cid,
        url=settings.public_url(f"/creatives/{stored.cid}"),
        content_type=stored.content_type,
        size=stored.size,
        width=stored.width,
        height=stored.height,
    )


creatives_files = APIRouter(tags=["creatives"])


@creatives_files.get("/creatives/{cid}", name="serve_creative")
def serve_creative(cid: str, request: Request) -> Response:
    """A creative by its CID: immutable, so cached for a year."""
    data = request.app.state.storage.get(cid)
    if data is None:
        raise NotFound(f"no creative {cid}")
    kind, _, _ = creatives.sniff(data)
    return Response(
        data,
        media_type=kind,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "ETag": f'"{cid}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
