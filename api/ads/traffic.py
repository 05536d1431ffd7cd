"""Who is asking: a declared agent or a person's browser, from where and on what device,
and a visitor key for frequency caps that never stores the IP.

Agents are recognised by their user agent (crawlers, HTTP libraries, headless browsers, AI
agents); they are offered the x402 paid path and never a billable ad. The visitor key is an
HMAC of the IP's /24 (/48 for IPv6) and the user agent under a salt that changes every UTC
day, so keys cannot be linked across days."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from datetime import UTC, datetime
from functools import lru_cache

AGENT = re.compile(
    r"bot|crawl|spider|slurp|scrap|fetch|curl|wget|python|httpx|aiohttp|requests|urllib|"
    r"go-http|java/|okhttp|node|axios|undici|libwww|perl|ruby|php|headless|phantom|"
    r"puppeteer|playwright|selenium|webdriver|gpt|claude|anthropic|perplexity|openai|"
    r"facebookexternalhit|preview|monitor|x402",
    re.IGNORECASE,
)
MOBILE = re.compile(r"mobi|iphone|android.*mobile|windows phone", re.IGNORECASE)
TABLET = re.compile(r"ipad|tablet|android(?!.*mobile)", re.IGNORECASE)


def is_agent(user_agent: str | None) -> bool:
    return not user_agent or AGENT.search(user_agent) is not None


@lru_cache(maxsize=4_096)  # a few user agents make most traffic
def device_of(user_agent: str | None) -> str:
    if user_agent and TABLET.search(user_agent):
        return "tablet"
    if user_agent and MOBILE.search(user_agent):
        return "mobile"
    return "desktop"


def truncated_ip(ip: str | None) -> str:
    """The network, not the host: /24 for IPv4, /48 for IPv6."""
    if ip and ip.count(".") == 3 and ip.replace(".", "").isdigit():  # IPv4, the common case
        head, _, last = ip.rpartition(".")
        if all(0 <= int(part) <= 255 for part in (*head.split("."), last)):
            return f"{head}.0/24"
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return "unknown"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def today(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d")


@lru_cache(maxsize=8)
def _salt(secret: str, day: str) -> bytes:
    return hmac.new(secret.encode(), f"buzzer/visitor/{day}".encode(), hashlib.sha256).digest()


def visitor_key(secret: str, ip: str | None, user_agent: str | None, day: str) -> str:
    salt = _salt(secret, day)
    material = f"{truncated_ip(ip)}|{user_agent or ''}".encode()
    return hmac.digest(salt, material, "sha256").hex()[:32]
