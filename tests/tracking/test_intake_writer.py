"""The intake's stream entries as the writer stores them: every event lands in `ad_events`
once, verified or with its reason, and the billed spend in Redis is the sum of what was
stored as verified."""

from __future__ import annotations

from migrations import upgrade
from tests.support.fixtures import database_url  # noqa: F401 (fixtures used by name)
from tests.tracking.conftest import CPM_ID, CPM_PRICE, click_path, impress, impression_token
from tests.tracking.writer_fixtures import make_writer, rows

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def test_the_writer_stores_what_the_intake_decided(site, settings, database_url):  # noqa: F811
    upgrade(database_url)
    first, second, third = site.ad(), site.ad(), site.ad()
    impress(site.browser, impression_token(first))
    impress(site.browser, impression_token(first))  # duplicate
    impress(site.browser, impression_token(second), user_agent=GOOGLEBOT)
    impress(site.browser, "forged")
    site.browser.get(click_path(third))  # no impression before it

    writer = make_writer(database_url, settings.redis_url, shards=settings.tracking_shards)
    try:
        writer.drain()
    finally:
        writer.close()

    stored = rows(
        database_url,
        "SELECT kind, verified, reason, price, campaign_id FROM ad_events ORDER BY occurred_at",
    )
    assert [(kind, verified, reason) for kind, verified, reason, *_ in stored] == [
        ("impression", True, None),
        ("impression", False, "duplicate"),
        ("impression", False, "bot"),
        ("impression", False, "forged"),
        ("click", False, "click_without_impression"),
    ]
    assert stored[0][3:] == (CPM_PRICE, CPM_ID)
    verified = sum(price for _, ok, _, price, _ in stored if ok)
    assert site.money(CPM_ID)["billed"] == verified == CPM_PRICE
