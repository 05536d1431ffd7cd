"""Domain verification: the publisher proves control of its site's domain by a DNS TXT
record, a file at `/.well-known/buzzer.txt`, or a meta tag on its home page. Fetching the
publisher's URLs is guarded against SSRF: only http(s), every hop's address must be public,
at most 3 redirects, 5 s and 1 MB, and the connection goes to the address that was checked."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx

from api.core.errors import ApiError

MAX_BYTES = 1_000_000
TIMEOUT = 5.0
MAX_REDIRECTS = 3
TOKEN_NAME = "buzzer-verification"

Resolver = Callable[[str], list[str]]
AddressPolicy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]


class BlockedUrl(ApiError):
    status = 400
    code = "blocked_url"


class VerificationFailed(ApiError):
    status = 422
    code = "verification_failed"


def verification_token(secret: str, wallet: str, domain: str) -> str:
    """Stable per wallet and domain, so nothing needs storing and no one can guess it."""
    digest = hmac.new(secret.encode(), f"{wallet.lower()}|{domain}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def system_resolver(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def public_only(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass
class SafeFetcher:
    resolver: Resolver = system_resolver
    allowed: AddressPolicy = public_only

    def _check(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BlockedUrl(f"only http(s) URLs can be checked, not {url!r}")
        host = parts.hostname
        try:
            literal = ipaddress.ip_address(host)
            addresses = [str(literal)]
        except ValueError:
            try:
                addresses = self.resolver(host)
            except (OSError, UnicodeError):
                raise BlockedUrl(f"{host} does not resolve") from None
        if not addresses:
            raise BlockedUrl(f"{host} does not resolve")
        for raw in addresses:
            if not self.allowed(ipaddress.ip_address(raw)):
                raise BlockedUrl(f"{host} points at a non-public address ({raw})")
        return addresses[0]

    def get(self, url: str) -> str:
        """The body of `url` (at most 1 MB), following at most 3 checked redirects."""
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                address = self._check(url)
                parts = urlsplit(url)
                host = parts.hostname or ""
                # connect to the address just checked (no second lookup an attacker could
                # rebind), keeping the name for the Host header and TLS
                literal = f"[{address}]" if ":" in address else address
                netloc = f"{literal}:{parts.port}" if parts.port else literal
                pinned = parts._replace(netloc=netloc).geturl()
                headers = {"User-Agent": "BuzzerVerifier/1", "Host": parts.netloc}
                with client.stream(
                    "GET", pinned, headers=headers, extensions={"sni_hostname": host}
                ) as r:
                    if r.is_redirect and "location" in r.headers:
                        url = urljoin(url, r.headers["location"])
                        continue
                    if r.status_code != 200:
                        raise VerificationFailed(f"{url} answered {r.status_code}")
                    body = b""
                    for chunk in r.iter_bytes():
                        body += chunk
                        if len(body) > MAX_BYTES:
                            raise VerificationFailed(f"{url} is larger than 1 MB")
                    return body.decode("utf-8", errors="replace")
        raise VerificationFailed(f"more than {MAX_REDIRECTS} redirects")


class _MetaFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and found.get("name") == TOKEN_NAME and found.get("content"):
            self.values.append(str(found["content"]))


def check_well_known(fetcher: SafeFetcher, domain: str, token: str) -> bool:
    for scheme in ("https", "http"):
        try:
            body = fetcher.get(f"{scheme}://{domain}/.well-known/buzzer.txt")
        except (VerificationFailed, httpx.HTTPError):
            continue
        if token in body.split():
            return True
    return False


def check_meta_tag(fetcher: SafeFetcher, domain: str, token: str) -> bool:
    for scheme in ("https", "http"):
        try:
            body = fetcher.get(f"{scheme}://{domain}/")
        except (VerificationFailed, httpx.HTTPError):
            continue
        finder = _MetaFinder()
        finder.feed(body)
        if token in finder.values:
            return True
    return False


def check_dns_txt(txt_lookup: Callable[[str], list[str]], domain: str, token: str) -> bool:
    expected = f"{TOKEN_NAME}={token}"
    for name in (f"_buzzer.{domain}", domain):
        try:
            if expected in txt_lookup(name):
                return True
        except Exception:
            continue
    return False


def dns_txt(name: str) -> list[str]:
    import dns.resolver

    answers = dns.resolver.resolve(name, "TXT", lifetime=TIMEOUT)
    return [b"".join(r.strings).decode() for r in answers]
