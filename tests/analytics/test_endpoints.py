"""The analytics endpoints as their users see them: a publisher its own figures, an
advertiser its own campaign's (someone else's is a 404), the network for admin wallets only
(403 for others); ranges validated; hour and day points; CSV; the current hour included."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from api.analytics.jobs import floor_minute, roll_up
from tests.analytics.conftest import (
    Event,
    Wallet,
    auth,
    insert_events,
    insert_payment,
    register_campaign,
)

DAY = datetime(2026, 11, 2, tzinfo=UTC)
OTHER = "0x" + "c" * 40
RANGE = {"from": "2026-11-02", "to": "2026-11-03"}


@pytest.fixture
def publisher(client, engine):
    """A signed-in publisher with traffic on two days, and another publisher's traffic."""
    wallet = Wallet()
    mine = wallet.address.lower()
    at = DAY + timedelta(hours=10, minutes=5)
    insert_events(
        engine,
        [
            *(Event(at, publisher=mine, slot_id="top", price=1_001) for _ in range(3)),
            Event(at, kind="click", publisher=mine, slot_id="top", price=50_000),
            Event(at, verified=False, reason="bot", publisher=mine, slot_id="top"),
            Event(at, verified=False, reason="datacenter", publisher=mine, slot_id="side"),
            Event(at + timedelta(days=1), publisher=mine, slot_id="side", price=7, campaign_id=2),
            Event(at, publisher=OTHER, slot_id="theirs", price=999_999),
        ],
    )
    insert_payment(engine, at, "top", mine, 250_000)
    roll_up(engine, now=DAY + timedelta(days=3))
    return wallet


def test_a_publisher_sees_its_own_traffic_spend_and_earnings(client, publisher):
    reply = client.get("/api/v1/analytics/publisher", params=RANGE, headers=auth(client, publisher))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    totals = body["totals"]
    assert totals["impressions"] == 6  # the other publisher's impression is not here
    assert totals["verified_impressions"] == 4
    assert (totals["clicks"], totals["verified_clicks"]) == (1, 1)
    assert totals["ctr_bps"] == 2_500  # 1 verified click per 4 verified impressions
    assert totals["spend"] == str(3 * 1_001 + 50_000 + 7)
    assert totals["earnings"] == str((3 * 1_001 + 50_000 + 7) * 85 // 100)
    assert totals["ivt_rate_bps"] == 2 * 10_000 // 7
    assert totals["ivt_by_reason"] == {
        "bot": {"events": 1, "rate_bps": 1_428},
        "datacenter": {"events": 1, "rate_bps": 1_428},
    }
    assert (totals["x402_payments"], totals["x402_revenue"]) == (1, "250000")
    assert [p["bucket"] for p in body["series"]] == ["2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"]
    assert [p["spend"] for p in body["series"]] == [str(3 * 1_001 + 50_000), "7"]
    assert [(s["slot_id"], s["spend"]) for s in body["top"]["slots"]] == [
        ("top", "53003"),
        ("side", "7"),
    ]
    assert [c["campaign_id"] for c in body["top"]["campaigns"]] == [1, 2]


def test_hour_grouping_gives_one_point_per_hour_with_traffic(client, publisher):
    reply = client.get(
        "/api/v1/analytics/publisher",
        params={"from": "2026-11-02T09:00:00Z", "to": "2026-11-02T12:00:00Z", "group": "hour"},
        headers=auth(client, publisher),
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["from"], body["to"]) == ("2026-11-02T09:00:00Z", "2026-11-02T12:00:00Z")
    assert [(p["bucket"], p["impressions"]) for p in body["series"]] == [
        ("2026-11-02T10:00:00Z", 5)
    ]


def test_the_current_hour_is_read_live(client, engine):
    wallet = Wallet()
    mine = wallet.address.lower()
    now = datetime.now(UTC)
    insert_events(engine, [Event(now - timedelta(hours=3), publisher=mine, price=5)])
    roll_up(engine, now=now)
    insert_events(engine, [Event(now, publisher=mine, price=11), Event(now, publisher=mine)])
    headers = auth(client, wallet)
    body = client.get("/api/v1/analytics/publisher", headers=headers).json()
    assert body["rolled_until"] == floor_minute(now).isoformat().replace("+00:00", "Z")
    assert body["totals"]["impressions"] == 3
    assert body["totals"]["spend"] == "16"


def test_a_date_to_includes_its_whole_day(client, publisher):
    reply = client.get(
        "/api/v1/analytics/publisher",
        params={"from": "2026-11-02T10:00:00Z", "to": "2026-11-02"},
        headers=auth(client, publisher),
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["to"] == "2026-11-03T00:00:00Z"
    assert reply.json()["totals"]["impressions"] == 5


def test_another_publishers_wallet_sees_none_of_it(client, publisher):
    body = client.get(
        "/api/v1/analytics/publisher", params=RANGE, headers=auth(client, Wallet())
    ).json()
    assert body["totals"]["impressions"] == 0
    assert body["series"] == []
    assert body["top"] == {"campaigns": [], "slots": []}


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"from": "2026-11-03", "to": "2026-11-02"}, "`to` is before `from`"),
        ({"from": "2025-01-01", "to": "2026-11-02"}, "longer than 366 days"),
        ({"from": "2026-10-01", "to": "2026-11-02", "group": "hour"}, "longer than 31 days"),
        ({"from": "yesterday"}, "must be a date"),
        ({"from": "9999-12-30", "to": "9999-12-31"}, "between the years"),
        ({"from": "2026-11-02", "group": "week"}, "not valid"),
    ],
)
def test_a_bad_range_is_a_clear_422(client, params, problem):
    reply = client.get("/api/v1/analytics/publisher", params=params, headers=auth(client, Wallet()))
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "validation_error"
    assert problem in reply.json()["error"]["message"]


def test_a_campaign_is_its_advertisers_only(client, engine, publisher):
    owner, stranger = Wallet(), Wallet()
    register_campaign(engine, 1, owner.address)
    url = "/api/v1/analytics/campaigns/1"
    reply = client.get(url, params=RANGE, headers=auth(client, owner))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["totals"]["spend"] == str(3 * 1_001 + 50_000 + 999_999)
    assert [p["publisher"] for p in body["top"]["publishers"]] == [
        OTHER,
        publisher.address.lower(),
    ]
    assert client.get(f"{url}/ivt", params=RANGE, headers=auth(client, owner)).status_code == 200
    for path in (url, f"{url}/ivt", "/api/v1/analytics/campaigns/2", f"{url}9"):
        reply = client.get(path, params=RANGE, headers=auth(client, stranger))
        assert reply.status_code == 404, path
        assert reply.json()["error"]["code"] == "not_found"
    missing = client.get(
        "/api/v1/analytics/campaigns/00000000-0000-0000-0000-000000000000",
        headers=auth(client, stranger),
    )
    assert missing.status_code == 404


def test_the_network_is_for_admin_wallets_only(client, publisher, admin):
    for path in ("/api/v1/analytics/network", "/api/v1/analytics/network/ivt"):
        refused = client.get(path, params=RANGE, headers=auth(client, publisher))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "not_admin"
    body = client.get("/api/v1/analytics/network", params=RANGE, headers=auth(client, admin)).json()
    assert body["totals"]["impressions"] == 7
    assert body["top"]["publishers"][0]["publisher"] == OTHER
    assert [c["campaign_id"] for c in body["top"]["campaigns"]] == [1, 2]
    assert body["top"]["slots"][0]["slot_id"] == "theirs"
    assert client.get("/api/v1/analytics/network").status_code == 401


def test_the_ivt_report_breaks_invalid_traffic_down_by_reason(client, publisher, admin):
    mine = client.get(
        "/api/v1/analytics/publisher/ivt", params=RANGE, headers=auth(client, publisher)
    ).json()
    assert [(r["slot_id"], r["ivt_by_reason"]) for r in mine["rows"]] == [
        ("side", {"datacenter": {"events": 1, "rate_bps": 5_000}}),
        ("top", {"bot": {"events": 1, "rate_bps": 2_000}}),
    ]
    network = client.get(
        "/api/v1/analytics/network/ivt", params=RANGE, headers=auth(client, admin)
    ).json()
    rows = {r["publisher"]: r for r in network["rows"]}
    assert rows[publisher.address.lower()]["ivt_events"] == 2
    assert rows[OTHER]["ivt_rate_bps"] == 0


def test_csv_export_has_a_header_and_one_line_per_point(client, publisher):
    reply = client.get(
        "/api/v1/analytics/publisher",
        params={**RANGE, "format": "csv"},
        headers=auth(client, publisher),
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(line["bucket"], line["impressions"], line["spend"]) for line in lines] == [
        ("2026-11-02T00:00:00+00:00", "5", "53003"),
        ("2026-11-03T00:00:00+00:00", "1", "7"),
    ]
    assert lines[0]["ivt_bot"] == "1" and lines[0]["x402_revenue"] == "250000"
    empty = client.get(
        "/api/v1/analytics/publisher/ivt",
        params={"from": "2020-01-01", "to": "2020-01-02", "format": "csv"},
        headers=auth(client, publisher),
    )
    assert empty.text.splitlines()[0].startswith("publisher,slot_id,impressions,")
    assert len(empty.text.splitlines()) == 1
