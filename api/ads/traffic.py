"""Who is asking: a declared agent or a person's browser, from where and on what device,
and a visitor key for frequency caps that never stores the IP.

    is_agent("python-httpx/0.28.1")   # True: offered the x402 paid path, never a billable ad
    device_of(user_agent)             # 'desktop', 'mobile' or 'tablet'

Agents are recognised by maintained lists, not patterns of our own: crawlers, HTTP
libraries and headless browsers by `crawlerdetect` (the list the tracking intake's bot rule
uses too), plus the few clients it does not list (`EXTRA_AGENTS`). Devices come from
`ua-parser` (the uap-core rules; `ua-parser-rs` makes a parse ~15× faster when installed).
Both are cached per user agent: a few strings make most traffic, so a repeated one costs a
dictionary lookup. The visitor key is an HMAC of the IP's /24 (/48 for IPv6) and the user
agent under a salt that changes every UTC day, so keys cannot be linked across days."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from datetime import datetime
from functools import lru_cache

import ua_parser
from crawlerdetect import CrawlerDetect

CACHED_USER_AGENTS = 8_192

# Clients crawlerdetect 0.4.2 does not list, each shown missing from it in
# tests/ads/test_traffic.py: the default user agent of Node's built-in fetch (what x402's
# JavaScript clients send), Deno's and Bun's fetch, JDK's HttpClient, x402 client libraries
# naming themselves, and AI fetchers and crawler tokens (Perplexity-User, anthropic-ai,
# cohere-ai).
EXTRA_AGENTS = re.compile(
    r"^node$|^(?:deno|bun)/|^java-http-client/|x402|perplexity-user|anthropic-ai|cohere-ai",
    re.IGNORECASE,
)

_crawlers = CrawlerDetect()


@lru_cache(maxsize=CACHED_USER_AGENTS)
def is_crawler(user_agent: str | None) -> bool:
    """A bot, crawler, HTTP library or headless browser by the crawlerdetect list, or no
    user agent at all (every browser sends one). Uncached, a browser's takes the library
    about 0.3 ms."""
    if not user_agent or not user_agent.strip():
        return True
    return bool(_crawlers.isCrawler(user_agent))


@lru_cache(maxsize=CACHED_USER_AGENTS)
def is_agent(user_agent: str | None) -> bool:
    """Not a person's browser: `is_crawler`, or one of `EXTRA_AGENTS`."""
    return is_crawler(user_agent) or EXTRA_AGENTS.search(user_agent or "") is not None


MOBILE_OS = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "Symbian OS", "KaiOS", "Firefox OS"}
)
_DEVICE_AND_OS = ua_parser.Domain.DEVICE | ua_parser.Domain.OS


def warm() -> None:
    """Build ua-parser's rules now (a few hundred ms, once per process), not while the first
    browser's request and every request queued behind it wait."""
    ua_parser.parser("", _DEVICE_AND_OS)


@lru_cache(maxsize=CACHED_USER_AGENTS)
def device_of(user_agent: str | None) -> str:
    """'tablet', 'mobile' or 'desktop', from what ua-parser reads in the user agent: its
    device (an iPad, uap-core's generic tablets, a model named a tablet, a Kindle) and its
    operating system (a phone's). On Android the browsers follow Google's rule that a phone
    says "Mobile" and a tablet does not, which tells tablets the rules have no name for."""
    if not user_agent:
        return "desktop"
    parsed = ua_parser.parser(user_agent, _DEVICE_AND_OS)
    device, system = parsed.device, parsed.os
    family = device.family if device else ""
    brand = device.brand if device else None
    if (
        family == "iPad"
        or "Tablet" in family
        or family.startswith("Kindle")
        or brand == "Generic_Android_Tablet"
    ):
        return "tablet"
    os_family = system.family if system else ""
    if os_family == "Android" and "Mobile" not in user_agent:
        return "tablet"
    if os_family in MOBILE_OS or family in ("Generic Smartphone", "Generic Feature Phone"):
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


_day: tuple[int, str] = (-1, "")  # the UTC day number and its name, formatted once a day


def today(now: datetime | None = None) -> str:
    """The UTC day, `YYYYMMDD` (every fill asks: formatted once per day)."""
    global _day
    if now is not None:
        return now.strftime("%Y%m%d")
    number = int(time.time() // 86_400)
    if number != _day[0]:
        _day = (number, time.strftime("%Y%m%d", time.gmtime(number * 86_400)))
    return _day[1]


@lru_cache(maxsize=8)
def _salt(secret: str, day: str) -> bytes:
    return hmac.new(secret.encode(), f"buzzer/visitor/{day}".encode(), hashlib.sha256).digest()


@lru_cache(maxsize=16_384)  # a visitor asks for every slot of a page, and again on the next
def visitor_key(secret: str, ip: str | None, user_agent: str | None, day: str) -> str:
    salt = _salt(secret, day)
    material = f"{truncated_ip(ip)}|{user_agent or ''}".encode()
    return hmac.digest(salt, material, "sha256").hex()[:32]
