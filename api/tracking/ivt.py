"""Invalid-traffic rules the intake decides from the request alone: declared bots, crawlers
and other agents (the ad server's own test, `api.ads.traffic.is_agent`: the maintained
`crawlerdetect` list and the few clients it lacks) and data-centre address ranges (a CIDR
list file, a sample shipped beside this module).

    rules = IvtRules.from_settings(settings)
    rules.verdict(user_agent, ip)   # '' (nothing wrong) or a reason: 'bot', 'datacenter'

The rules that need state (duplicate, expired, forged, click without impression, too fast,
not served) are decided with the token and Redis in `api.tracking.intake`; the rate rules
in the writer."""

from __future__ import annotations

import ipaddress
import logging
from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path

from api.ads.traffic import is_agent as is_bot  # one cached detector for serving and intake
from api.core.settings import Settings

log = logging.getLogger("api.tracking")

BOT, DATACENTER = "bot", "datacenter"
SAMPLE_RANGES = Path(__file__).with_name("datacenter_ranges.txt")


class Ranges:
    """A set of CIDR blocks, looked up by bisecting merged integer intervals."""

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self._starts: dict[int, list[int]] = {4: [], 6: []}
        self._ends: dict[int, list[int]] = {4: [], 6: []}
        for version in (4, 6):
            spans = sorted(
                (int(n.network_address), int(n.broadcast_address))
                for n in networks
                if n.version == version
            )
            for start, end in spans:
                ends = self._ends[version]
                if ends and start <= ends[-1] + 1:
                    ends[-1] = max(ends[-1], end)
                else:
                    self._starts[version].append(start)
                    ends.append(end)

    def __len__(self) -> int:
        return len(self._starts[4]) + len(self._starts[6])

    def __contains__(self, ip: object) -> bool:
        if isinstance(ip, str) and ip.count(".") == 3:  # IPv4, the common case
            parts = ip.split(".")
            if all(p.isdigit() and len(p) <= 3 for p in parts):
                a, b, c, d = (int(p) for p in parts)
                if max(a, b, c, d) <= 255:
                    return self._holds(4, a << 24 | b << 16 | c << 8 | d)
        try:
            address = ipaddress.ip_address(str(ip))
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return self._holds(address.version, int(address))

    def _holds(self, version: int, value: int) -> bool:
        i = bisect_right(self._starts[version], value) - 1
        return i >= 0 and value <= self._ends[version][i]

    @classmethod
    def parse(cls, text: str, source: str = "ranges") -> Ranges:
        networks = []
        for number, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                log.warning("%s:%d: not a CIDR block, skipped: %r", source, number, entry)
        return cls(networks)

    @classmethod
    def load(cls, path: Path) -> Ranges:
        return cls.parse(path.read_text(), str(path))


class IvtRules:
    """The request-level rules, each switchable in settings."""

    def __init__(self, datacenter: Ranges, bots: bool = True, datacenters: bool = True) -> None:
        self.datacenter = datacenter
        self.bots = bots
        self.datacenters = datacenters

    @classmethod
    def from_settings(cls, settings: Settings) -> IvtRules:
        path = Path(settings.datacenter_ranges_file or SAMPLE_RANGES)
        return cls(Ranges.load(path), settings.ivt_bots, settings.ivt_datacenter)

    def verdict(self, user_agent: str | None, ip: str | None) -> str:
        if self.bots and is_bot(user_agent):
            return BOT
        if self.datacenters and ip in self.datacenter:
            return DATACENTER
        return ""
