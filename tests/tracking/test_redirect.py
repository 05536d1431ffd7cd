"""A click goes to the campaign's own landing page and nowhere else: not through a query
parameter, an encoding, a scheme, nor a landing URL a browser would read as another host."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.ads import tokens
from tests.tracking.conftest import (
    BROWSER,
    CPM_ID,
    LANDING,
    SECRET,
    campaign,
    claims_of,
    click_path,
    impress,
    impression_token,
)

EVIL = "evil.example"
HOSTILE_LANDINGS = [
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "https:\\\\evil.example",
    "https:/\\evil.example",
    "https://shoes.example\\@evil.example",
    "https://shoes.example@evil.example/",
    "https://user:pass@evil.example/",
    "javascript:alert(document.domain)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "java%0ascript:alert(1)",
    "%6Aavascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "ftp://evil.example/",
    "https%3A%2F%2Fevil.example",
    "https://evil%2Eexample/",
    "https://shoes.example\r\nLocation: https://evil.example",
    "https://shoes.example/\x00",
    "https://ｅｖｉｌ.example/",
    "http://",
    "https:///evil.example",
    "https://:443/",
    "https://shoes.example:99999/",
    "/relative/path",
    "evil.example",
    "",
]


def click(site, ad, path_suffix: str = "", **params):
    return site.browser.get(
        click_path(ad) + path_suffix, params=params or None, headers={"User-Agent": BROWSER}
    )


def test_a_click_goes_to_the_campaign_landing_page_uncached(site):
    ad = site.ad()
    impress(site.browser, impression_token(ad))
    reply = click(site, ad)
    assert reply.status_code == 302
    assert reply.headers["location"] == LANDING
    assert "no-store" in reply.headers["cache-control"]
    assert reply.headers["referrer-policy"] == "origin"  # the token stays with us
    assert site.last().verdict == ""


@pytest.mark.parametrize(
    "params",
    [
        {"url": f"https://{EVIL}/"},
        {"redirect": f"//{EVIL}"},
        {"next": f"https:\\\\{EVIL}"},
        {"landing_url": "javascript:alert(1)"},
        {"to": f"https%3A%2F%2F{EVIL}"},
        {"u": f"/\\{EVIL}", "url": f"//{EVIL}", "dest": f"http://{EVIL}"},
    ],
)
def test_query_parameters_never_change_where_a_click_goes(site, params):
    reply = click(site, site.ad(), **params)
    assert reply.status_code == 302 and reply.headers["location"] == LANDING


@pytest.mark.parametrize("suffix", [f"/{EVIL}", f"/..%2F..%2F{EVIL}", f"%2F%2F{EVIL}"])
def test_a_path_added_to_the_click_url_is_no_click(site, suffix):
    reply = click(site, site.ad(), suffix)
    assert reply.status_code in (400, 404)
    assert "location" not in reply.headers


@pytest.mark.parametrize("landing", HOSTILE_LANDINGS)
def test_a_landing_url_a_browser_could_read_as_elsewhere_is_never_followed(site, landing):
    site.load(campaign(CPM_ID, landing_url=landing))
    ad = site.ad()
    reply = click(site, ad)
    assert reply.status_code == 404, (landing, reply.headers.get("location"))
    assert "location" not in reply.headers
    assert reply.json()["error"]["code"] == "no_landing_page"
    assert site.last().kind == "click"  # the click is still recorded


@pytest.mark.parametrize(
    "landing",
    ["https://shoes.example/", "HTTPS://Shoes.Example/p?q=1#top", "http://shoes.example:8080/x"],
)
def test_plain_http_and_https_landing_urls_are_followed(site, landing):
    site.load(campaign(CPM_ID, landing_url=landing))
    reply = click(site, site.ad())
    assert reply.status_code == 302 and reply.headers["location"] == landing


def test_a_forged_click_gets_an_error_and_no_redirect(site):
    for token in ("forged.token", "x" * 40, "javascript:alert(1)", "https:evil.example"):
        reply = site.browser.get(f"/track/click/{token}", headers={"User-Agent": BROWSER})
        assert reply.status_code == 400 and "location" not in reply.headers
        assert reply.json()["error"]["code"] == "invalid_link"
    assert [e.verdict for e in site.events()] == ["forged"] * 4
    encoded = site.browser.get("/track/click/%2F%2Fevil.example")  # no route: a 404
    assert encoded.status_code == 404 and "location" not in encoded.headers


def test_a_click_token_for_another_campaign_cannot_be_made(site):
    token = click_path(site.ad()).rsplit("/", 1)[1]
    body, _, mac = token.partition(".")
    reply = site.browser.get(f"/track/click/{body[:-4]}AAAA.{mac}")
    assert reply.status_code == 400 and "location" not in reply.headers


def test_an_expired_or_reused_click_still_takes_the_person_to_the_landing_page(site):
    ad = site.ad()
    impress(site.browser, impression_token(ad))
    assert click(site, ad).status_code == 302
    again = click(site, ad)
    assert again.status_code == 302 and again.headers["location"] == LANDING
    claims = {**claims_of(impression_token(ad)), "expires_at": int(time.time()) - 5}
    expired = site.browser.get(
        "/track/click/" + tokens.sign(SECRET, "click", claims), headers={"User-Agent": BROWSER}
    )
    assert expired.status_code == 302 and expired.headers["location"] == LANDING
    assert [e.verdict for e in site.events() if e.kind == "click"] == ["", "duplicate", "expired"]


@given(st.text(max_size=60))
def test_only_absolute_http_urls_to_a_named_host_pass(url):
    from urllib.parse import urlsplit

    from api.tracking.landing import safe_landing_url

    safe = safe_landing_url(url)
    if safe is not None:
        parts = urlsplit(safe)
        assert parts.scheme.lower() in ("http", "https") and parts.hostname
        assert safe.isascii() and "\\" not in safe and "@" not in parts.netloc
        assert all(ch > " " for ch in safe)
