"""Who the client is: the one place every per-IP rule (rate limits, the visitor key,
invalid-traffic checks) gets the client's address from.

    ip = client_ip(request, settings)

The peer of the connection is the client, unless it is one of `settings.trusted_proxies`:
then the forwarded chain (`Forwarded`, else `X-Forwarded-For`) is read from the right, each
hop added by a trusted proxy is skipped, and the first address that is not a trusted proxy is
the client. Everything left of it was written by the client itself and proves nothing. A
header that cannot be read where it matters gives the peer (never a guess).

uvicorn must not rewrite the peer from these headers itself (`--no-proxy-headers`), or a
client could choose its own address before this function sees it."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from starlette.requests import Request

from api.core.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"
# `for=` in one Forwarded element: a token or a quoted string
_FORWARDED_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.IGNORECASE)


def client_ip(request: Request, settings: Settings) -> str:
    """The client's address as text (the peer's when it is not an IP, e.g. a test client's
    name; "unknown" over a Unix socket)."""
    peer = request.client.host if request.client else UNKNOWN
    if not settings.trusted_proxies:
        return peer
    proxies = _networks(tuple(settings.trusted_proxies))
    peer_address = parse_address(peer)
    if peer_address is None or not _trusted(peer_address, proxies):
        return peer
    hops = forwarded_chain(request)
    if hops is None:
        return peer
    for hop in reversed(hops):
        if hop is None:  # unreadable where it matters: nothing left of it can be trusted
            return peer
        if not _trusted(hop, proxies):
            return str(hop)
    # every hop is a proxy of ours: the request started at the leftmost one
    return str(hops[0]) if hops and hops[0] is not None else peer


def forwarded_chain(request: Request) -> list[Address | None] | None:
    """The forwarded addresses, client first (None for one that is not an address); None
    when no forwarding header is present. RFC 7239 `Forwarded` wins over `X-Forwarded-For`."""
    forwarded = request.headers.getlist("forwarded")
    if forwarded:
        hops: list[Address | None] = []
        for element in ",".join(forwarded).split(","):
            match = _FORWARDED_FOR.search(element.strip())
            hops.append(parse_address(match.group(1)) if match else None)
        return hops
    x_forwarded_for = request.headers.getlist("x-forwarded-for")
    if x_forwarded_for:
        return [parse_address(part) for part in ",".join(x_forwarded_for).split(",")]
    return None


def parse_address(text: str) -> Address | None:
    """An IP address from a header's hop: plain, quoted, `[v6]`, with or without a port;
    an IPv4-mapped IPv6 address as the IPv4 one. None for anything else (`unknown`,
    obfuscated `_names`, garbage)."""
    value = text.strip().strip('"').strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _trusted(address: Address, proxies: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)
