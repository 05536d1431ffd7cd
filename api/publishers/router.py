"""`/api/v1/publishers`: the signed-in wallet's own publisher account."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.core.chain import TxData
from api.core.db import SessionDep
from api.deps import SettingsDep, WalletDep, WalletLimited
from api.publishers import earnings, service, sites, slots
from api.publishers.schemas import (
    DomainInstructions,
    DomainVerified,
    EarningsPublic,
    EpochEarnings,
    IntegrationCode,
    PaymentWalletIn,
    PublisherCreate,
    PublisherPublic,
    PublisherUpdate,
    RegistrationIn,
    SiteCreate,
    SitePublic,
    SlotCreate,
    SlotPublic,
    SlotUpdate,
    VerifyDomainIn,
)
from api.settlement.schemas import ClaimsPublic

router = APIRouter(prefix="/api/v1/publishers", tags=["publishers"], dependencies=[WalletLimited])


@router.post("", response_model=PublisherPublic, status_code=status.HTTP_201_CREATED)
def create_publisher(
    body: PublisherCreate, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> PublisherPublic:
    """Create the publisher profile of the signed-in wallet."""
    return service.create(session, settings.chain_id, wallet, body, settings.dev_trust_sites)


@router.get("/me", response_model=PublisherPublic)
def read_publisher(
    wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> PublisherPublic:
    """The wallet's profile and its on-chain registration as indexed."""
    return service.read(session, settings.chain_id, wallet)


@router.patch("/me", response_model=PublisherPublic)
def update_publisher(
    body: PublisherUpdate, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> PublisherPublic:
    return service.update(session, settings.chain_id, wallet, body, settings.dev_trust_sites)


@router.post("/me/registration-tx", response_model=TxData)
def registration_tx(
    body: RegistrationIn, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """The transaction that registers the wallet on-chain, ready for the wallet to sign.
    The profile shows `onchain.registered` once the indexer has seen the event."""
    return service.registration_tx(session, settings.chain_id, wallet, body)


@router.post("/me/payment-wallet-tx", response_model=TxData)
def payment_wallet_tx(
    body: PaymentWalletIn, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """`PublisherRegistry.update_payment_wallet` for the wallet to sign: what settles after it
    is mined pays the new wallet. 409 `not_registered` before the on-chain registration."""
    return service.payment_wallet_tx(session, settings.chain_id, wallet, body)


@router.post("/me/slots", response_model=SlotPublic, status_code=status.HTTP_201_CREATED)
def create_slot(body: SlotCreate, wallet: WalletDep, session: SessionDep) -> SlotPublic:
    """A new ad slot; its `slot_id` is what the page sends to `/x402/ad`."""
    return slots.create(session, wallet, body)


@router.get("/me/slots", response_model=list[SlotPublic])
def list_slots(wallet: WalletDep, session: SessionDep) -> list[SlotPublic]:
    return slots.list_slots(session, wallet)


@router.get("/me/slots/{slot_id}", response_model=SlotPublic)
def read_slot(slot_id: str, wallet: WalletDep, session: SessionDep) -> SlotPublic:
    return slots.read(session, wallet, slot_id)


@router.patch("/me/slots/{slot_id}", response_model=SlotPublic)
def update_slot(
    slot_id: str, body: SlotUpdate, wallet: WalletDep, session: SessionDep
) -> SlotPublic:
    """Rename, pause or resume, resize, or re-price a slot."""
    return slots.update(session, wallet, slot_id, body)


@router.delete("/me/slots/{slot_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_slot(slot_id: str, wallet: WalletDep, session: SessionDep) -> Response:
    slots.delete(session, wallet, slot_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/slots/{slot_id}/integration", response_model=IntegrationCode)
def integration_code(
    slot_id: str, request: Request, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> IntegrationCode:
    """The HTML/JS snippet for the page, and a server-side relay for agents."""
    pub_id = service.onchain_status(session, settings.chain_id, wallet).pub_id
    return slots.integration(session, wallet, slot_id, settings.public_url("/"), pub_id)


@router.get("/me/domain", response_model=DomainInstructions)
def domain_instructions(
    wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> DomainInstructions:
    """How to prove the website's domain: a DNS TXT record, a file, or a meta tag."""
    return service.domain_instructions(session, settings.jwt_secret, wallet)


@router.post("/me/domain/verify", response_model=DomainVerified)
def verify_domain(
    body: VerifyDomainIn,
    request: Request,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
) -> DomainVerified:
    """Check the proof; on success the domain is recorded on-chain (our ads.txt)."""
    return service.verify_domain(
        session,
        settings,
        wallet,
        body.method,
        request.app.state.domain_fetcher,
        request.app.state.txt_lookup,
    )


@router.get("/me/earnings", response_model=EarningsPublic)
def read_earnings(wallet: WalletDep, session: SessionDep, settings: SettingsDep) -> EarningsPublic:
    """Earned, claimable, pending and claimed per token, from settled epochs."""
    return earnings.summary(session, settings, wallet)


@router.get("/me/earnings/epochs", response_model=list[EpochEarnings])
def read_epoch_earnings(
    wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> list[EpochEarnings]:
    """What each settled epoch allocated to the publisher, per token, newest first."""
    return earnings.per_epoch(session, settings, wallet)


@router.get("/me/claims", response_model=ClaimsPublic)
def read_claims(wallet: WalletDep, session: SessionDep, settings: SettingsDep) -> ClaimsPublic:
    """Claimable now (proof and transaction per token), pending in a challenge period, and
    the payment history: claims paid and x402 payments received."""
    return earnings.claims(session, settings, wallet)


@router.post("/me/claim-txs", response_model=list[TxData])
def claim_txs(wallet: WalletDep, session: SessionDep, settings: SettingsDep) -> list[TxData]:
    """`PublisherPayout.claim` with the newest claimable proof, one per token."""
    return earnings.claim_txs(session, settings, wallet)


@router.post("/me/sites", response_model=SitePublic, status_code=status.HTTP_201_CREATED)
def create_site(
    body: SiteCreate, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> SitePublic:
    """Another website of the publisher (the profile's website is the main site). Its slots
    serve ads once its domain is verified."""
    return sites.create(session, wallet, body, settings.dev_trust_sites)


@router.get("/me/sites", response_model=list[SitePublic])
def list_sites(wallet: WalletDep, session: SessionDep) -> list[SitePublic]:
    return sites.list_sites(session, wallet)


@router.get("/me/sites/{site_id}", response_model=SitePublic)
def read_site(site_id: str, wallet: WalletDep, session: SessionDep) -> SitePublic:
    return sites.read(session, wallet, site_id)


@router.delete("/me/sites/{site_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_site(site_id: str, wallet: WalletDep, session: SessionDep) -> Response:
    """Remove a site without slots (not the main one)."""
    sites.delete(session, wallet, site_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/sites/{site_id}/domain", response_model=DomainInstructions)
def site_domain_instructions(
    site_id: str, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> DomainInstructions:
    """How to prove this site's domain."""
    return service.domain_instructions(session, settings.jwt_secret, wallet, site_id)


@router.post("/me/sites/{site_id}/domain/verify", response_model=DomainVerified)
def verify_site_domain(
    site_id: str,
    body: VerifyDomainIn,
    request: Request,
    wallet: WalletDep,
    session: SessionDep,
    settings: SettingsDep,
) -> DomainVerified:
    """Check this site's proof; on success the chain's domain hash commits to it too."""
    return service.verify_domain(
        session,
        settings,
        wallet,
        body.method,
        request.app.state.domain_fetcher,
        request.app.state.txt_lookup,
        site_id,
    )
