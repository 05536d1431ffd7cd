"""A publisher's websites: the main one (the profile's) and any added. Each proves its own
domain; slots belong to a site, whose category campaigns can target."""

from __future__ import annotations

from sqlmodel import Session, select

from api.core.errors import Conflict
from api.publishers.models import AdSlot, PublisherSite
from api.publishers.schemas import SiteCreate, SitePublic
from api.publishers.service import domain_of, main_site, own_site, profile_of, trusted


def public(site: PublisherSite) -> SitePublic:
    return SitePublic(
        id=str(site.id),
        url=site.url,
        domain=site.domain,
        category=site.category,
        main=site.main,
        verified=site.verified_at is not None,
        verified_at=site.verified_at,
    )


def create(
    session: Session, wallet: str, body: SiteCreate, trust_sites: bool = False
) -> SitePublic:
    """A new site of the publisher: its slots serve ads once its domain is verified (at once
    under `dev_trust_sites`, on a local chain)."""
    profile = profile_of(session, wallet)
    main_site(session, profile)
    url = str(body.website_url)
    domain = domain_of(url)
    clash = session.exec(
        select(PublisherSite).where(
            PublisherSite.publisher_id == profile.id, PublisherSite.domain == domain
        )
    ).first()
    if clash is not None:
        raise Conflict(f"you already have a site on {domain}", code="already_exists")
    site = PublisherSite(
        publisher_id=profile.id,
        url=url,
        domain=domain,
        category=body.category or profile.category,
    )
    session.add(trusted(site, trust_sites))
    session.commit()
    session.refresh(site)
    return public(site)


def list_sites(session: Session, wallet: str) -> list[SitePublic]:
    profile = profile_of(session, wallet)
    main_site(session, profile)
    session.commit()
    sites = session.exec(
        select(PublisherSite)
        .where(PublisherSite.publisher_id == profile.id)
        .order_by(PublisherSite.created_at)  # type: ignore[arg-type]
    ).all()
    return [public(site) for site in sites]


def read(session: Session, wallet: str, site_id: str) -> SitePublic:
    return public(own_site(session, profile_of(session, wallet), site_id))


def delete(session: Session, wallet: str, site_id: str) -> None:
    site = own_site(session, profile_of(session, wallet), site_id)
    if site.main:
        raise Conflict("the main site is the profile's website: change that instead")
    if session.exec(select(AdSlot).where(AdSlot.site_id == site.id)).first() is not None:
        raise Conflict("the site still has slots: delete or move them first", code="has_slots")
    session.delete(site)
    session.commit()
