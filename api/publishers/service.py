"""Publisher profiles and their on-chain status (from the indexer's projection)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from eth_utils import keccak
from sqlalchemy import text
from sqlmodel import Session, select

from api.core.chain import ChainError, TxData, send_as, transaction
from api.core.errors import ApiError, Conflict, NotFound
from api.core.settings import Settings
from api.publishers import domains
from api.publishers.models import PublisherProfile, PublisherSite
from api.publishers.schemas import (
    DomainInstructions,
    DomainVerified,
    OnChainStatus,
    PaymentWalletIn,
    PublisherCreate,
    PublisherPublic,
    PublisherUpdate,
    RegistrationIn,
    VerificationMethod,
)


def find_profile(session: Session, wallet: str) -> PublisherProfile | None:
    return session.exec(
        select(PublisherProfile).where(PublisherProfile.wallet == wallet.lower())
    ).first()


def profile_of(session: Session, wallet: str) -> PublisherProfile:
    profile = find_profile(session, wallet)
    if profile is None:
        raise NotFound("this wallet has no publisher profile yet: create one first")
    return profile


def onchain_status(session: Session, chain_id: int, wallet: str) -> OnChainStatus:
    row = session.execute(
        text(
            "SELECT pub_id, payment_wallet, quality_score, domain_hash, suspended"
            " FROM publishers_onchain WHERE chain_id = :chain AND wallet = :wallet"
        ),
        {"chain": chain_id, "wallet": wallet.lower()},
    ).first()
    if row is None:
        return OnChainStatus(registered=False)
    return OnChainStatus(
        registered=True,
        pub_id=row.pub_id,
        payment_wallet=row.payment_wallet,
        quality_score=row.quality_score,
        domain_hash=row.domain_hash,
        suspended=row.suspended,
    )


def public(session: Session, chain_id: int, profile: PublisherProfile) -> PublisherPublic:
    return PublisherPublic(
        wallet=profile.wallet,
        website_url=profile.website_url,
        email=profile.email,
        category=profile.category,
        push_payouts=profile.push_payouts,
        push_threshold=int(profile.push_threshold),
        onchain=onchain_status(session, chain_id, profile.wallet),
    )


def create(
    session: Session, chain_id: int, wallet: str, body: PublisherCreate, trust_sites: bool = False
) -> PublisherPublic:
    if find_profile(session, wallet) is not None:
        raise Conflict("this wallet already has a publisher profile", code="already_exists")
    profile = PublisherProfile(
        wallet=wallet.lower(),
        website_url=str(body.website_url),
        email=str(body.email) if body.email else None,
        category=body.category,
    )
    session.add(profile)
    session.flush()
    main = PublisherSite(
        publisher_id=profile.id,
        url=profile.website_url,
        domain=domain_of(profile.website_url),
        category=profile.category,
        main=True,
    )
    session.add(trusted(main, trust_sites))
    session.commit()
    session.refresh(profile)
    return public(session, chain_id, profile)


def read(session: Session, chain_id: int, wallet: str) -> PublisherPublic:
    return public(session, chain_id, profile_of(session, wallet))


def update(
    session: Session, chain_id: int, wallet: str, body: PublisherUpdate, trust_sites: bool = False
) -> PublisherPublic:
    profile = profile_of(session, wallet)
    changes = body.model_dump(exclude_unset=True)
    if "website_url" in changes and changes["website_url"] is not None:
        profile.website_url = str(body.website_url)
    if "email" in changes:
        profile.email = str(body.email) if body.email else None
    if "category" in changes:
        profile.category = body.category
    if changes.get("push_payouts") is not None:
        profile.push_payouts = bool(body.push_payouts)
    if changes.get("push_threshold") is not None:
        profile.push_threshold = int(body.push_threshold or 0)
    main = main_site(session, profile)
    main.category = profile.category
    if main.url != profile.website_url:
        main.url = profile.website_url
        if main.domain != domain_of(profile.website_url):
            main.domain = domain_of(profile.website_url)
            main.verified_at = main.verified_by = None  # a new domain is proven anew
    session.add(trusted(main, trust_sites))
    profile.updated_at = datetime.now(UTC)
    session.add(profile)
    session.commit()
    session.refresh(profile)
    return public(session, chain_id, profile)


def registration_tx(session: Session, chain_id: int, wallet: str, body: RegistrationIn) -> TxData:
    """`PublisherRegistry.register(pub_id, payment_wallet)` for the wallet to sign; refused
    with a clear error when it would revert."""
    profile_of(session, wallet)
    if onchain_status(session, chain_id, wallet).registered:
        raise Conflict("this wallet is already registered on-chain", code="already_exists")
    taken = session.execute(
        text("SELECT 1 FROM publishers_onchain WHERE chain_id = :chain AND pub_id = :pub_id"),
        {"chain": chain_id, "pub_id": body.pub_id},
    ).first()
    if taken is not None:
        raise Conflict(f"pub_id {body.pub_id!r} is taken", code="pub_id_taken")
    payment_wallet = body.payment_wallet or wallet
    return transaction(
        chain_id,
        "PublisherRegistry",
        "register",
        body.pub_id,
        payment_wallet,
        description=f"Register publisher {body.pub_id!r}, paid to {payment_wallet}",
    )


def payment_wallet_tx(
    session: Session, chain_id: int, wallet: str, body: PaymentWalletIn
) -> TxData:
    """`PublisherRegistry.update_payment_wallet(new_wallet)` for the wallet to sign: epochs
    allocated from then on pay the new wallet; earlier leaves stay with the old one."""
    profile_of(session, wallet)
    status = onchain_status(session, chain_id, wallet)
    if not status.registered:
        raise Conflict(
            "register the wallet on-chain first: the payment wallet is part of that registration",
            code="not_registered",
        )
    if status.payment_wallet and status.payment_wallet.lower() == body.payment_wallet.lower():
        raise Conflict(f"{body.payment_wallet} is already the payment wallet", code="unchanged")
    return transaction(
        chain_id,
        "PublisherRegistry",
        "update_payment_wallet",
        body.payment_wallet,
        description=f"Pay {status.pub_id!r} to {body.payment_wallet} from now on",
    )


def domain_of(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return host.lower().removeprefix("www.")


DEV_VERIFIER = "dev"


def trusted(site: PublisherSite, trust_sites: bool) -> PublisherSite:
    """`site`, verified at once when the settings trust every site added (`dev_trust_sites`,
    a local chain only); nothing is recorded on-chain for it."""
    if trust_sites and site.verified_at is None:
        site.verified_at = datetime.now(UTC)
        site.verified_by = DEV_VERIFIER
    return site


def main_site(session: Session, profile: PublisherProfile) -> PublisherSite:
    site = session.exec(
        select(PublisherSite).where(
            PublisherSite.publisher_id == profile.id,
            PublisherSite.main == True,  # noqa: E712
        )
    ).first()
    if site is None:  # a profile made before sites existed and not migrated: heal it
        site = PublisherSite(
            publisher_id=profile.id,
            url=profile.website_url,
            domain=domain_of(profile.website_url),
            category=profile.category,
            main=True,
        )
        session.add(site)
        session.flush()
    return site


def own_site(session: Session, profile: PublisherProfile, site_id: str | None) -> PublisherSite:
    """The publisher's site `site_id`, or its main site when None; another publisher's
    site looks exactly like a missing one."""
    if site_id is None:
        return main_site(session, profile)
    try:
        key = uuid.UUID(site_id)
    except ValueError:
        raise NotFound(f"you have no site {site_id!r}") from None
    site = session.exec(
        select(PublisherSite).where(
            PublisherSite.id == key, PublisherSite.publisher_id == profile.id
        )
    ).first()
    if site is None:
        raise NotFound(f"you have no site {site_id!r}")
    return site


def domains_commitment(domains: list[str]) -> bytes:
    """What `PublisherRegistry.domain_hash` records: keccak256 of the publisher's verified
    domains, sorted and joined by newlines (for one domain, keccak256 of the domain)."""
    return keccak(text="\n".join(sorted(set(domains))))


def domain_instructions(
    session: Session, secret: str, wallet: str, site_id: str | None = None
) -> DomainInstructions:
    profile = profile_of(session, wallet)
    domain = own_site(session, profile, site_id).domain
    token = domains.verification_token(secret, wallet, domain)
    return DomainInstructions(
        domain=domain,
        token=token,
        dns_txt=f"_buzzer.{domain} TXT {domains.TOKEN_NAME}={token}",
        well_known_url=f"https://{domain}/.well-known/buzzer.txt (containing {token})",
        meta_tag=f'<meta name="{domains.TOKEN_NAME}" content="{token}">',
    )


def verify_domain(
    session: Session,
    settings: Settings,
    wallet: str,
    method: VerificationMethod,
    fetcher: domains.SafeFetcher,
    txt_lookup: Callable[[str], list[str]],
    site_id: str | None = None,
) -> DomainVerified:
    """Check the proof for the site (the main one by default); on success the ORACLE
    records the commitment to all the publisher's verified domains on-chain."""
    profile = profile_of(session, wallet)
    site = own_site(session, profile, site_id)
    guide = domain_instructions(session, settings.jwt_secret, wallet, site_id)
    taken = session.exec(
        select(PublisherSite).where(
            PublisherSite.domain == site.domain,
            PublisherSite.publisher_id != profile.id,
            PublisherSite.verified_at != None,  # noqa: E711
        )
    ).first()
    if taken is not None:
        raise Conflict(f"{site.domain} is verified by another publisher", code="domain_taken")
    if not onchain_status(session, settings.chain_id, wallet).registered:
        raise Conflict(
            "register the wallet on-chain first: the domain is bound to that registration",
            code="not_registered",
        )
    if method is VerificationMethod.dns:
        proven = domains.check_dns_txt(txt_lookup, guide.domain, guide.token)
    elif method is VerificationMethod.well_known:
        proven = domains.check_well_known(fetcher, guide.domain, guide.token)
    else:
        proven = domains.check_meta_tag(fetcher, guide.domain, guide.token)
    if not proven:
        raise domains.VerificationFailed(
            f"no {method.value} proof with token {guide.token} found for {guide.domain}",
            {"instructions": guide.model_dump()},
        )
    verified = session.exec(
        select(PublisherSite.domain).where(
            PublisherSite.publisher_id == profile.id,
            PublisherSite.verified_at != None,  # noqa: E711
        )
    ).all()
    domain_hash = domains_commitment([*verified, site.domain])
    tx = transaction(
        settings.chain_id,
        "PublisherRegistry",
        "set_domain_verified",
        wallet,
        domain_hash,
        description=f"Record {guide.domain} as verified for {wallet}",
    )
    try:
        tx_hash = send_as(settings.rpc_url, settings.oracle_private_key, tx)
    except ChainError as exc:
        raise ApiError(str(exc), status=503, code="chain_unavailable") from None
    site.verified_at = datetime.now(UTC)
    site.verified_by = method.value
    session.add(site)
    session.commit()
    return DomainVerified(
        domain=guide.domain, method=method, domain_hash="0x" + domain_hash.hex(), tx_hash=tx_hash
    )
