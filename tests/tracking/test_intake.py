"""The intake end to end on a real Redis: an ad served by `GET /x402/ad` is tracked through
`/track/impression` and `/track/click/…`; every event, valid or not, lands in the campaign's
stream shard with its verdict, and only a verified one moves money."""

from __future__ import annotations

import base64
import json
import time

import redis

from api.ads import tokens
from api.tracking.intake import USED_MARGIN, Intake, Visit
from api.tracking.landing import LandingPages
from api.tracking.stream import DEFAULT_SHARDS, Keys, shard_of
from tests.tracking.conftest import (
    BROWSER,
    CPC_BID,
    CPC_ID,
    CPM_BID,
    CPM_ID,
    CPM_PRICE,
    LANDING,
    PERSON_IP,
    PUBLISHER,
    SECRET,
    SLOT,
    TOKEN,
    campaign,
    claims_of,
    click_path,
    impress,
    impression_token,
)

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def test_a_rendered_ad_is_recorded_verified_and_bills_its_reservation(site):
    ad = site.ad()
    assert site.money(CPM_ID) == {"reserved": CPM_PRICE, "billed": 0, "served": 1}

    reply = impress(site.browser, impression_token(ad))

    assert reply.status_code == 204
    assert site.money(CPM_ID) == {"reserved": 0, "billed": CPM_PRICE, "served": 0}
    (event,) = site.events(shard_of(CPM_ID, DEFAULT_SHARDS))
    assert (event.kind, event.verdict, event.billed) == ("impression", "", "1")
    assert (event.serve_id, event.campaign_id, event.slot_id) == (ad["ad_id"], str(CPM_ID), SLOT)
    assert (event.publisher, event.token, event.bid_model) == (PUBLISHER, TOKEN, "cpm")
    assert (event.bid, event.price) == (str(CPM_BID), str(CPM_PRICE))
    assert event.ip_prefix == "203.0.113.0/24" and PERSON_IP not in event.fields().values()
    assert len(event.visitor) == 32 and event.device == "desktop"
    assert int(event.epoch) > 0 and event.served_at


def test_the_pixel_is_a_cache_proof_gif(site):
    reply = site.browser.get(
        "/track/impression",
        params={"token": impression_token(site.ad())},
        headers={"User-Agent": BROWSER},
    )
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/gif"
    assert reply.content.startswith(b"GIF89a") and len(reply.content) < 64
    assert "no-store" in reply.headers["cache-control"]
    assert reply.headers["pragma"] == "no-cache" and reply.headers["expires"] == "0"
    assert site.last().verdict == "" and site.money(CPM_ID)["billed"] == CPM_PRICE


def test_a_beacon_carries_its_token_in_the_body_in_any_usual_shape(site):
    bodies = [
        lambda t: {"content": t},
        lambda t: {"data": {"token": t}},
        lambda t: {"content": json.dumps({"token": t})},
    ]
    for body in bodies:
        token = impression_token(site.ad())
        reply = site.browser.post(
            "/track/impression", headers={"User-Agent": BROWSER}, **body(token)
        )
        assert reply.status_code == 204
        assert site.last().verdict == "" and site.last().serve_id == claims_of(token)["serve_id"]
    assert site.money(CPM_ID)["billed"] == 3 * CPM_PRICE


def test_a_reused_impression_token_is_a_duplicate_and_bills_once(site):
    token = impression_token(site.ad())
    for _ in range(3):
        assert impress(site.browser, token).status_code == 204
    assert [e.verdict for e in site.events()] == ["", "duplicate", "duplicate"]
    assert [e.billed for e in site.events()] == ["1", "0", "0"]
    assert site.money(CPM_ID) == {"reserved": 0, "billed": CPM_PRICE, "served": 0}


def test_a_forged_token_is_recorded_and_moves_nothing(site):
    site.ad()
    impress(site.browser, "not-a-token")
    impress(site.browser, "")
    (first, second) = site.events(0)
    assert first.verdict == second.verdict == "forged"
    assert first.campaign_id == "" and first.billed == "0"
    assert site.money(CPM_ID) == {"reserved": CPM_PRICE, "billed": 0, "served": 1}


def test_a_modified_token_is_forged(site):
    """Raising the price (or naming another campaign) in the claims breaks the signature."""
    token = impression_token(site.ad())
    body, _, mac = token.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for change in ({"price": 10**9}, {"campaign_id": CPC_ID}, {"expires_at": 2**40}):
        tampered = {**claims, **change}
        raw = base64.urlsafe_b64encode(json.dumps(tampered, separators=(",", ":")).encode())
        impress(site.browser, raw.rstrip(b"=").decode() + "." + mac)
    impress(site.browser, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert [e.verdict for e in site.events()] == ["forged"] * 4
    assert site.money(CPM_ID)["billed"] == 0


def test_a_click_token_cannot_record_an_impression(site):
    ad = site.ad()
    impress(site.browser, click_path(ad).rsplit("/", 1)[1])
    assert site.last().verdict == "forged" and site.money(CPM_ID)["billed"] == 0


def test_an_expired_token_is_recorded_as_expired(site):
    claims = {**claims_of(impression_token(site.ad())), "expires_at": int(time.time()) - 1}
    impress(site.browser, tokens.sign(SECRET, "imp", claims))
    event = site.last()
    assert (event.verdict, event.campaign_id, event.billed) == ("expired", str(CPM_ID), "0")
    assert site.money(CPM_ID) == {"reserved": CPM_PRICE, "billed": 0, "served": 1}


def test_an_impression_of_an_ad_never_served_is_not_served(site):
    """A token signed with our key for a serve that never reserved anything (a replayed
    serve id from another deployment, a lost reservation) bills nothing."""
    claims = {**claims_of(impression_token(site.ad())), "serve_id": "f" * 32}
    impress(site.browser, tokens.sign(SECRET, "imp", claims))
    assert site.last().verdict == "not_served"
    assert site.money(CPM_ID) == {"reserved": CPM_PRICE, "billed": 0, "served": 1}


def test_declared_bots_and_clients_without_a_user_agent_are_bots(site):
    for user_agent in (GOOGLEBOT, "python-requests/2.32.3", ""):
        token = impression_token(site.ad())
        impress(site.browser, token, user_agent=user_agent)
        assert site.last().verdict == "bot", user_agent
    assert site.money(CPM_ID)["billed"] == 0
    assert site.money(CPM_ID)["reserved"] == 3 * CPM_PRICE  # released when the tokens expire


def test_traffic_from_a_data_centre_is_recorded_as_such(site):
    cloud = site.from_ip("52.1.2.3")  # AWS, in the shipped sample
    impress(cloud, impression_token(site.ad()))
    event = site.last()
    assert event.verdict == "datacenter" and event.ip_prefix == "52.1.2.0/24"
    assert site.money(CPM_ID)["billed"] == 0


def test_the_data_centre_list_is_configurable(site, settings, tmp_path):
    ranges = tmp_path / "ranges.txt"
    ranges.write_text("# our own list\n203.0.113.0/24\n")
    site.app.state.intake = None  # rebuilt with the new settings
    site.app.state.serving.settings = settings.model_copy(
        update={"datacenter_ranges_file": str(ranges)}
    )
    impress(site.browser, impression_token(site.ad()))
    assert site.last().verdict == "datacenter"


def test_each_intake_rule_can_be_switched_off(site, settings):
    site.app.state.intake = None
    site.app.state.serving.settings = settings.model_copy(update={"ivt_bots": False})
    impress(site.browser, impression_token(site.ad()), user_agent=GOOGLEBOT)
    assert site.last().verdict == ""


def test_a_click_without_an_impression_is_recorded_as_such(site):
    ad = site.ad()
    reply = site.browser.get(click_path(ad), headers={"User-Agent": BROWSER})
    assert reply.status_code == 302
    assert site.last().verdict == "click_without_impression"


def test_a_click_faster_than_a_person_is_too_fast(site, settings):
    site.app.state.intake = None
    site.app.state.serving.settings = settings.model_copy(update={"min_click_ms": 60_000})
    ad = site.ad()
    impress(site.browser, impression_token(ad))
    site.browser.get(click_path(ad), headers={"User-Agent": BROWSER})
    assert [e.verdict for e in site.events()] == ["", "too_fast"]


def test_a_cpc_click_bills_its_bid_once(site):
    site.load(campaign(CPC_ID, bid_model="cpc", bid=CPC_BID))
    ad = site.ad()
    assert site.money(CPC_ID) == {
        "reserved": 0,
        "billed": 0,
        "served": 0,
    }  # a CPC serve only checks
    impress(site.browser, impression_token(ad))
    for _ in range(2):
        assert site.browser.get(click_path(ad), headers={"User-Agent": BROWSER}).status_code == 302
    impression, click, again = site.events()
    assert (impression.verdict, impression.billed, impression.price) == ("", "0", "0")
    assert (click.kind, click.verdict, click.billed, click.price) == (
        "click",
        "",
        "1",
        str(CPC_BID),
    )
    assert again.verdict == "duplicate" and again.billed == "0"
    assert site.money(CPC_ID)["billed"] == CPC_BID
    epoch = Keys(CPC_ID, DEFAULT_SHARDS).epoch(int(click.epoch))
    assert int(site.redis.get(epoch)) == CPC_BID


def test_a_cpc_click_past_the_free_budget_is_not_billed(site):
    site.load(campaign(CPC_ID, bid_model="cpc", bid=CPC_BID, balance=CPC_BID))
    first, second = site.ad(), site.ad()  # both served: each alone fits
    for ad in (first, second):
        impress(site.browser, impression_token(ad))
        site.browser.get(click_path(ad), headers={"User-Agent": BROWSER})
    assert [e.billed for e in site.events() if e.kind == "click"] == ["1", "0"]
    assert site.money(CPC_ID)["billed"] == CPC_BID  # never more than the balance


def test_a_click_on_a_cpm_ad_is_verified_but_bills_nothing(site):
    ad = site.ad()
    impress(site.browser, impression_token(ad))
    site.browser.get(click_path(ad), headers={"User-Agent": BROWSER})
    click = site.last()
    assert (click.verdict, click.billed, click.price) == ("", "0", "0")
    assert site.money(CPM_ID)["billed"] == CPM_PRICE


def test_first_use_marks_expire_after_the_token(site):
    token = impression_token(site.ad())
    impress(site.browser, token)
    claims = claims_of(token)
    ttl = site.redis.ttl(Keys(CPM_ID, DEFAULT_SHARDS).used(claims["serve_id"], "impression"))
    assert (
        claims["expires_at"] - time.time()
        < ttl
        <= claims["expires_at"] - time.time() + USED_MARGIN + 1
    )


def test_with_redis_unreachable_the_pixel_and_the_click_still_answer(site, settings):
    """The event is lost (logged), the visitor is not: the pixel loads, the click lands."""
    ad = site.ad()
    dead = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    site.app.state.intake = Intake(settings, dead, site.app.state.serving.catalog)
    site.app.state.landing_pages = LandingPages(None, settings.chain_id)
    pixel = site.browser.get(
        "/track/impression", params={"token": impression_token(ad)}, headers={"User-Agent": BROWSER}
    )
    assert pixel.status_code == 200 and pixel.content.startswith(b"GIF")
    click = site.browser.get(click_path(ad), headers={"User-Agent": BROWSER})
    assert click.status_code == 302 and click.headers["location"] == LANDING


def test_events_are_recorded_once_after_redis_forgets_its_scripts(site):
    """A restarted Redis has no scripts loaded: the batch is retried, nothing runs twice."""
    token = impression_token(site.ad())
    impress(site.browser, impression_token(site.ad()))
    site.redis.script_flush()
    impress(site.browser, token)
    assert [e.verdict for e in site.events()] == ["", ""]
    assert site.money(CPM_ID)["billed"] == 2 * CPM_PRICE


def test_concurrent_beacons_share_round_trips_and_each_is_recorded_once(site, settings):
    """Group commit: many events in flight at once go to Redis together, each decided on
    its own."""
    import asyncio

    async def burst() -> list[str]:
        cache = redis.asyncio.Redis.from_url(settings.redis_url, decode_responses=True)
        intake = Intake(settings, cache, site.app.state.serving.catalog)
        visit = Visit(PERSON_IP, BROWSER)
        served = [impression_token(site.ad()) for _ in range(30)]
        outcomes = await asyncio.gather(
            *(intake.record("impression", t, visit) for t in served + served[:10])
        )
        await cache.aclose()
        return [o.verdict for o in outcomes]

    verdicts = asyncio.run(burst())
    assert sorted(verdicts) == [""] * 30 + ["duplicate"] * 10
    assert site.money(CPM_ID) == {"reserved": 0, "billed": 30 * CPM_PRICE, "served": 0}


def test_the_country_is_kept_only_when_it_looks_like_one(site):
    for header, kept in (("DE", "DE"), ("de", ""), ("<script>", ""), ("XYZ", "")):
        site.browser.post(
            "/track/impression",
            params={"token": impression_token(site.ad())},
            headers={"User-Agent": BROWSER, "CF-IPCountry": header},
        )
        assert site.last().geo == kept, header


def test_a_forwarded_address_counts_only_from_a_trusted_proxy(site, settings):
    token, other = impression_token(site.ad()), impression_token(site.ad())
    spoofed = {"User-Agent": BROWSER, "X-Forwarded-For": "52.1.2.3"}  # a cloud address
    site.browser.post("/track/impression", params={"token": token}, headers=spoofed)
    assert (site.last().ip_prefix, site.last().verdict) == ("203.0.113.0/24", "")

    site.app.state.serving.settings = settings.model_copy(
        update={"trusted_proxies": [PERSON_IP]}  # the browser's address is now our proxy
    )
    site.app.state.intake = None
    site.browser.post("/track/impression", params={"token": other}, headers=spoofed)
    assert (site.last().ip_prefix, site.last().verdict) == ("52.1.2.0/24", "datacenter")
