"""End to end on anvil and Postgres: a campaign registered and funded on-chain is served,
its impression bills the reservation, and its click lands on the landing URL the advertiser
gave (read from the campaign record in Postgres when the serving catalog no longer holds
the campaign)."""

from __future__ import annotations

import time
from dataclasses import replace
from urllib.parse import urlsplit

from api.ads.catalog import Snapshot
from api.ads.matching import Index
from api.tracking.stream import DEFAULT_SHARDS, Keys, TrackedEvent
from tests.ads.test_endpoint import (  # noqa: F401 (fixtures used by name)
    BROWSER,
    CAMPAIGN,
    ad,
    campaign_body,
    site,
)
from tests.api.conftest import api, settings  # noqa: F401 (fixtures used by name)
from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil,
    chain,
    database_url,
)


def test_serve_render_click_on_a_funded_campaign(api, site):  # noqa: F811
    body = ad(api, site).json()
    cache = api.app.state.redis
    keys = Keys(site["campaign"], DEFAULT_SHARDS)
    assert int(cache.get(keys.reserved)) == 2_000
    headers = {"User-Agent": BROWSER}

    impression = urlsplit(body["impression_url"])._replace(scheme="", netloc="").geturl()
    assert api.post(impression, headers=headers).status_code == 204
    assert (int(cache.get(keys.reserved)), int(cache.get(keys.billed))) == (0, 2_000)

    time.sleep(api.app.state.settings.min_click_ms / 1000 + 0.05)  # a person reads the ad first
    # the campaign leaves the serving catalog (e.g. its balance ran out): clicks still land
    serving = api.app.state.serving
    held = serving.catalog.current()
    serving.catalog.snapshot = replace(held, index=Index())
    assert isinstance(serving.catalog.snapshot, Snapshot)
    click = api.get(
        urlsplit(body["click_url"]).path + "?url=https://evil.example/",
        headers=headers,
        follow_redirects=False,
    )
    assert click.status_code == 302
    assert click.headers["location"] == CAMPAIGN["landing_url"]
    entries = [TrackedEvent.parse(fields) for _, fields in cache.xrange(keys.stream)]
    assert [(e.kind, e.verdict) for e in entries] == [("impression", ""), ("click", "")]
