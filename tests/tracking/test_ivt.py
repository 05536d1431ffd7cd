"""The request-level invalid-traffic rules: declared bots by the maintained crawler list,
data-centre ranges by CIDR (IPv4, IPv6, IPv4-mapped)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from api.tracking.ivt import SAMPLE_RANGES, IvtRules, Ranges, is_bot

BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2;"
    " +https://openai.com/gptbot)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Wget/1.21.4",
    "",
    "   ",
    None,
]


def test_declared_bots_are_bots_and_browsers_are_not():
    assert [is_bot(ua) for ua in BOTS] == [True] * len(BOTS)
    assert [is_bot(ua) for ua in BROWSERS] == [False] * len(BROWSERS)


def test_the_shipped_sample_holds_well_known_cloud_ranges():
    ranges = Ranges.load(SAMPLE_RANGES)
    assert "3.5.140.2" in ranges and "34.120.0.1" in ranges and "104.131.5.5" in ranges
    assert "2600:1f00::1" in ranges and "::ffff:3.5.140.2" in ranges
    assert "8.8.8.8" not in ranges and "203.0.113.7" not in ranges and "2001:db8::1" not in ranges
    assert "unknown" not in ranges and None not in ranges


def test_a_broken_line_is_skipped_not_fatal():
    ranges = Ranges.parse("10.0.0.0/8\nnot a range\n192.168.1.0/24 # office\n")
    assert len(ranges) == 2 and "192.168.1.9" in ranges and "172.16.0.1" not in ranges


def test_rules_answer_the_first_reason_and_can_be_switched_off():
    ranges = Ranges.parse("52.0.0.0/11")
    assert IvtRules(ranges).verdict(BOTS[0], "52.1.1.1") == "bot"
    assert IvtRules(ranges).verdict(BROWSERS[0], "52.1.1.1") == "datacenter"
    assert IvtRules(ranges).verdict(BROWSERS[0], "81.2.3.4") == ""
    assert IvtRules(ranges, bots=False, datacenters=False).verdict(BOTS[0], "52.1.1.1") == ""


networks = st.builds(
    lambda a, p: ipaddress.ip_network(f"{ipaddress.IPv4Address(a)}/{p}", strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(8, 32),
)


@given(st.lists(networks, max_size=20), st.lists(st.integers(0, 2**32 - 1), max_size=50))
def test_lookup_agrees_with_checking_every_block(blocks, addresses):
    ranges = Ranges(blocks)
    for value in addresses:
        address = ipaddress.IPv4Address(value)
        assert (str(address) in ranges) == any(address in block for block in blocks)
