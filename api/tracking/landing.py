"""Where a click goes: the campaign's own landing URL, from the campaign record we hold,
and only if it is a plain absolute http(s) URL. Nothing in the click request (query,
path, headers) can change the destination, so the click endpoint is no open redirect.

    safe_landing_url("https://shoes.example/sale")  # the URL
    safe_landing_url("javascript:alert(1)")         # None
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from sqlalchemy import Engine, text

log = logging.getLogger("api.tracking")

MAX_URL = 2_048
CACHE_SECONDS = 60.0

LANDING = text(
    """
    SELECT d.landing_url
    FROM campaign_drafts d
    JOIN campaigns_onchain c ON c.chain_id = :chain AND c.campaign_id = d.onchain_id
    WHERE d.onchain_id = :campaign
    ORDER BY (c.metadata_hash = d.metadata_hash) DESC, d.updated_at DESC
    LIMIT 1
    """
)


def safe_landing_url(url: object) -> str | None:
    """`url` if it is an absolute http(s) URL to a named host with nothing a browser might
    read another way (backslashes, whitespace or control characters, credentials,
    non-ASCII, percent-encoded host); else None."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL:
        return None
    if not url.isascii() or any(ch <= " " or ch == "\x7f" or ch == "\\" for ch in url):
        return None
    if not url.lower().startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme.lower() not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    if "%" in parts.netloc or host.startswith(".") or "/" in host:
        return None
    return url


class LandingPages:
    """Landing URLs by on-chain campaign id: the serving catalog's when it holds the
    campaign, else Postgres (a campaign no longer served still takes its clicks), cached
    for a minute."""

    def __init__(self, engine: Engine | None, chain_id: int) -> None:
        self.engine = engine
        self.chain_id = chain_id
        self._cache: dict[int, tuple[float, str | None]] = {}

    def from_database(self, campaign_id: int) -> str | None:
        now = time.monotonic()
        cached = self._cache.get(campaign_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        if self.engine is None:
            return None
        try:
            with self.engine.connect() as db:
                url = db.execute(
                    LANDING, {"chain": self.chain_id, "campaign": campaign_id}
                ).scalar()
        except Exception:
            log.exception("could not read the landing URL of campaign %d", campaign_id)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[campaign_id] = (now, url)
        return str(url) if url is not None else None
