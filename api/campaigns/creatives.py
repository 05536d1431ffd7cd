"""Creative uploads: type by content (not by name), size limits (images 1 MB, video 10 MB),
standard banner sizes, stored content-addressed; attaching one changes the draft's
metadata hash, since the creative is part of what goes on-chain."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from PIL import Image, UnidentifiedImageError
from sqlmodel import Session

from api.campaigns.models import Creative
from api.campaigns.service import creative_cids, metadata_hash, onchain_row, own_campaign
from api.core.errors import ApiError, Conflict, PayloadTooLarge
from api.core.settings import Settings
from api.core.storage import Storage

IMAGE_LIMIT = 1_000_000
VIDEO_LIMIT = 10_000_000
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
BANNER_SIZES = {
    (300, 250), (728, 90), (160, 600), (320, 50), (300, 600), (970, 250),
    (336, 280), (468, 60), (250, 250), (200, 200), (120, 600), (320, 100),
}  # fmt: skip


class BadCreative(ApiError):
    status = 422
    code = "bad_creative"


def sniff(data: bytes) -> tuple[str, int | None, int | None]:
    """(content type, width, height) from the bytes themselves."""
    if data[4:8] == b"ftyp":
        return "video/mp4", None, None
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm", None, None
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = IMAGE_TYPES.get(str(image.format))
            if kind is None:
                raise BadCreative(f"{image.format} images are not accepted")
            image.verify()
            return kind, image.width, image.height
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise BadCreative("the file is not a PNG, JPEG, GIF, WebP, MP4 or WebM") from None


def upload(
    session: Session,
    settings: Settings,
    storage: Storage,
    wallet: str,
    campaign_id: str,
    data: bytes,
) -> Creative:
    draft = own_campaign(session, wallet, campaign_id)
    if onchain_row(session, settings, wallet, draft) is not None:
        raise Conflict("the campaign is registered: its creatives are fixed by its metadata hash")
    if len(data) > VIDEO_LIMIT:
        raise PayloadTooLarge("a creative is at most 10 MB (video) or 1 MB (image)")
    kind, width, height = sniff(data)
    if kind.startswith("image/") and len(data) > IMAGE_LIMIT:
        raise PayloadTooLarge("an image creative is at most 1 MB")
    if draft.format == "video" and not kind.startswith("video/"):
        raise BadCreative("a video campaign needs an MP4 or WebM creative")
    if draft.format == "banner":
        if not kind.startswith("image/"):
            raise BadCreative("a banner campaign needs an image creative")
        if (width, height) not in BANNER_SIZES:
            sizes = ", ".join(f"{w}x{h}" for w, h in sorted(BANNER_SIZES))
            raise BadCreative(f"{width}x{height} is not a standard banner size ({sizes})")
    creative = Creative(
        campaign_id=draft.id,
        cid=storage.put(data),
        content_type=kind,
        size=len(data),
        width=width,
        height=height,
    )
    session.add(creative)
    session.flush()
    draft.metadata_hash = metadata_hash(draft, creative_cids(session, draft))
    draft.updated_at = datetime.now(UTC)
    session.add(draft)
    session.commit()
    session.refresh(creative)
    return creative
