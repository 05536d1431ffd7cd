"""Each metric an operator watches moves when its event happens: ads served and refused,
events ingested and rejected by reason, the stream backlog, RPC errors, the settlement's
epochs by state, the indexer's head and lag, and a process's own metrics port."""

from __future__ import annotations

import socket

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from api.core.settings import Settings
from api.scheduler import settlement_states
from api.tracking.writer import Writer, WriterConfig
from chain.rpc import Rpc, RpcUnavailable
from migrations import libpq_url, upgrade
from observe import metrics
from tests.tracking.conftest import BROWSER, SLOT, Site, impress, impression_token


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_ad_decisions_count_each_outcome_and_time_it(site: Site) -> None:
    ads, refused = (
        value("buzzer_ad_decisions_total", outcome="ad"),
        value("buzzer_ad_decisions_total", outcome="refused"),
    )
    timed = value("buzzer_ad_decision_seconds_count")

    site.ad()
    reply = site.browser.get("/x402/ad", params={"pub_id": "news-example", "slot_id": SLOT})
    assert reply.status_code == 422  # no format: the request is refused

    assert value("buzzer_ad_decisions_total", outcome="ad") == ads + 1
    assert value("buzzer_ad_decisions_total", outcome="refused") == refused + 1
    assert value("buzzer_ad_decision_seconds_count") == timed + 2
    text = site.browser.get("/metrics").text
    assert 'buzzer_ad_decisions_total{outcome="ad"}' in text


def test_events_ingested_and_rejected_by_reason(site: Site) -> None:
    def counts() -> tuple[float, float, float]:
        return (
            value("buzzer_events_ingested_total", kind="impression"),
            value("buzzer_events_rejected_total", kind="impression", reason="duplicate"),
            value("buzzer_events_rejected_total", kind="impression", reason="forged"),
        )

    before = counts()
    token = impression_token(site.ad())
    assert impress(site.browser, token).status_code == 204
    impress(site.browser, token)  # the same pixel again
    impress(site.browser, "not-a-token")

    ingested, duplicate, forged = (a - b for a, b in zip(counts(), before, strict=True))
    assert (ingested, duplicate, forged) == (3, 1, 1)


def test_the_stream_backlog_is_what_the_writer_has_not_stored(site: Site, settings: Settings):
    writer = Writer(WriterConfig.from_settings(settings, database_url="postgresql://unused"))
    registry = CollectorRegistry()
    registry.register(metrics.Backlog(writer.backlog))

    def backlog() -> float:
        return sum(
            s.value
            for f in registry.collect()
            for s in f.samples
            if f.name == "buzzer_stream_backlog"
        )

    empty = backlog()
    token = impression_token(site.ad())
    impress(site.browser, token, user_agent=BROWSER)
    impress(site.browser, "not-a-token")
    assert backlog() == empty + 2


def test_rpc_errors_are_counted_by_method() -> None:
    before = value("buzzer_rpc_errors_total", kind="transport", method="eth_chainId")
    rpc = Rpc("http://127.0.0.1:9", retries=1, backoff=0.01)
    with pytest.raises(RpcUnavailable):
        rpc.chain_id()
    assert value("buzzer_rpc_errors_total", kind="transport", method="eth_chainId") == before + 3


def test_settlement_epochs_by_state_come_from_its_table(database_url: str) -> None:
    upgrade(database_url)
    settings = Settings(database_url=database_url, chain_id=1337)
    registry = CollectorRegistry()
    registry.register(metrics.SettlementStates(lambda: settlement_states(settings)))

    def gauges() -> dict[tuple[str, str], float]:
        return {(s.name, s.labels["state"]): s.value for f in registry.collect() for s in f.samples}

    assert gauges() == {}
    with psycopg.connect(libpq_url(database_url)) as conn:
        for epoch, state in ((7, "allocated"), (8, "allocated"), (9, "frozen")):
            conn.execute(
                "INSERT INTO settlement_epochs (chain_id, epoch, state, starts_at, ends_at,"
                " block_number, block_hash, end_block, events, inputs_hash, note)"
                " VALUES (1337, %s, %s, 0, 1, 1, '0x', 1, 0, '', '')",
                (epoch, state),
            )
    assert gauges() == {
        ("buzzer_settlement_epochs", "allocated"): 2,
        ("buzzer_settlement_epochs", "frozen"): 1,
        ("buzzer_settlement_last_epoch", "allocated"): 8,
        ("buzzer_settlement_last_epoch", "frozen"): 9,
    }


def test_a_process_serves_its_metrics_on_its_port_and_survives_a_taken_one() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"BUZZER_WATCHER_METRICS_PORT": str(port)}
    assert metrics.serve("watcher", environ=env) == port
    metrics.WATCHER_VERDICTS.labels("ok").inc()
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'buzzer_watcher_verdicts_total{verdict="ok"}' in text
    assert metrics.serve("watcher", environ=env) == 0  # taken: logged, the process goes on
    assert metrics.serve("watcher", environ={"BUZZER_WATCHER_METRICS_PORT": "0"}) == 0
    with pytest.raises(SystemExit, match="watcher: BUZZER_WATCHER_METRICS_PORT must be a port"):
        metrics.serve("watcher", environ={"BUZZER_WATCHER_METRICS_PORT": "http"})
