"""Every Prometheus metric Buzzer exports beyond HTTP requests (`api.core.edge`) and the x402
facilitator's gas guards (`api.ads.payments`), and how a process other than the API is
scraped: an HTTP port of its own.

    from observe import metrics
    metrics.AD_DECISIONS.labels("ad").inc()
    metrics.serve("indexer")   # /metrics on ${BUZZER_INDEXER_METRICS_PORT:-9101}

The API answers `/metrics` itself. The indexer, the tracking writer, the scheduler (which runs
settlement) and the watcher each listen on a port of their own (DEFAULT_PORTS; the variable
`BUZZER_<PROCESS>_METRICS_PORT` moves it, `0` turns it off; `BUZZER_METRICS_HOST` is the
address, 127.0.0.1 unless a scraper on another machine needs 0.0.0.0). A port already taken
(a second writer on the host) is logged and the process runs on unscraped: metrics never stop
the work. Gauges that describe shared state (the stream backlog, settlement per epoch) are read
when scraped (`Backlog`, `SettlementStates`), so they hold whichever process restarted.
ops/grafana/buzzer.json charts them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("observe.metrics")

DEFAULT_PORTS = {"indexer": 9101, "writer": 9102, "scheduler": 9103, "watcher": 9104}
HOST_VARIABLE = "BUZZER_METRICS_HOST"


class Labelled:
    """A labelled metric's children kept by label values: `labels()` looks the child up
    under a lock and re-checks the values on every call (a few µs, on every request of the
    hot path); the child for a given set of values never changes, so it is asked once.

        Labelled(metrics.AD_DECISIONS)("ad").inc()"""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*values)
        return child


# -- ad serving (API) ---------------------------------------------------------------------

AD_DECISIONS = Counter(
    "buzzer_ad_decisions",
    "GET /x402/ad answers by outcome: ad (filled), payment_required (402 with terms), empty "
    "(204), paid (an x402 payment settled), receipt (a valid receipt presented), refused "
    "(an error: bad request, bad payment or receipt)",
    ["outcome"],
)
AD_DECISION_SECONDS = Histogram(
    "buzzer_ad_decision_seconds",
    "Time to decide a GET /x402/ad, from the query to the answer (paid requests included)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
X402_PAYMENTS = Counter(
    "buzzer_x402_payments",
    "x402 payments presented to /x402/ad: settled, or rejected with the x402 reason",
    ["outcome", "reason"],
)

# -- tracking (API intake, writer) --------------------------------------------------------

EVENTS_INGESTED = Counter(
    "buzzer_events_ingested",
    "Impressions and clicks appended to the tracking stream (billable or not)",
    ["kind"],
)
EVENTS_REJECTED = Counter(
    "buzzer_events_rejected",
    "Impressions and clicks found not billable, by reason (the intake's IVT and token checks, "
    "the writer's rate rules); lost: not recorded at all (Redis unreachable)",
    ["kind", "reason"],
)
EVENTS_STORED = Counter(
    "buzzer_events_stored", "Tracked events the writer stored in PostgreSQL and acknowledged"
)
STREAM_BACKLOG = "buzzer_stream_backlog"

# -- indexer ------------------------------------------------------------------------------

INDEXER_HEAD = Gauge("buzzer_indexer_head_block", "The chain's head block the indexer last read")
INDEXER_BLOCK = Gauge("buzzer_indexer_block", "The last block indexed (committed)")
INDEXER_LAG = Gauge("buzzer_indexer_lag_blocks", "Blocks between the head and the last indexed")
INDEXER_EVENTS = Counter("buzzer_indexer_events", "Contract events indexed")
INDEXER_REORGS = Counter("buzzer_indexer_reorgs", "Reorgs detected and rewound")
INDEXER_ORPHANED = Counter("buzzer_indexer_orphaned_events", "Events orphaned by reorgs")

# -- settlement, watcher, RPC -------------------------------------------------------------

SETTLEMENT_EPOCHS = "buzzer_settlement_epochs"
SETTLEMENT_LAST_EPOCH = "buzzer_settlement_last_epoch"
WATCHER_VERDICTS = Counter(
    "buzzer_watcher_verdicts",
    "Posted roots the watcher checked, by verdict: ok, reported (bad, read-only or already "
    "revoked), revoked, paused",
    ["verdict"],
)
RPC_ERRORS = Counter(
    "buzzer_rpc_errors",
    "Failed JSON-RPC attempts: transport (unreachable, HTTP 5xx/429, bad JSON) or node (a "
    "JSON-RPC error answer), retried or not",
    ["kind", "method"],
)

# the names the collectors export, read when scraped
COLLECTED = (STREAM_BACKLOG, SETTLEMENT_EPOCHS, SETTLEMENT_LAST_EPOCH)


class Backlog(Collector):
    """`buzzer_stream_backlog{stream}`: entries in each tracking stream shard not stored yet.
    The writer deletes what it acknowledges, so a shard's length is what is waiting (never
    delivered, or delivered and not yet stored)."""

    def __init__(self, lengths: Callable[[], dict[str, int]]) -> None:
        self.lengths = lengths

    def describe(self) -> Iterable[Any]:
        return [GaugeMetricFamily(STREAM_BACKLOG, "")]

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(
            STREAM_BACKLOG, "Tracking stream entries not yet stored, per shard", labels=["stream"]
        )
        try:
            lengths = self.lengths()
        except Exception as exc:
            log.warning("stream backlog unreadable: %s", exc)
            lengths = {}
        for stream, length in sorted(lengths.items()):
            family.add_metric([stream], length)
        yield family


class SettlementStates(Collector):
    """`buzzer_settlement_epochs{state}` (how many epochs are in each state) and
    `buzzer_settlement_last_epoch{state}` (the newest epoch in it), read from the
    settlement's own table when scraped: `rows()` gives (state, count, newest epoch)."""

    def __init__(self, rows: Callable[[], Sequence[tuple[str, int, int]]]) -> None:
        self.rows = rows

    def describe(self) -> Iterable[Any]:
        return [
            GaugeMetricFamily(SETTLEMENT_EPOCHS, ""),
            GaugeMetricFamily(SETTLEMENT_LAST_EPOCH, ""),
        ]

    def collect(self) -> Iterator[Any]:
        epochs = GaugeMetricFamily(
            SETTLEMENT_EPOCHS,
            "Escrow epochs by settlement state (frozen, charged, spent, allocated, empty)",
            labels=["state"],
        )
        last = GaugeMetricFamily(
            SETTLEMENT_LAST_EPOCH, "The newest epoch in each settlement state", labels=["state"]
        )
        try:
            rows = self.rows()
        except Exception as exc:
            log.warning("settlement states unreadable: %s", exc)
            rows = []
        for state, count, newest in rows:
            epochs.add_metric([state], count)
            last.add_metric([state], newest)
        yield epochs
        yield last


def port_of(process: str, environ: dict[str, str] | None = None) -> int:
    """The metrics port of `process` (0: none)."""
    env = os.environ if environ is None else environ
    variable = f"BUZZER_{process.upper()}_METRICS_PORT"
    raw = env.get(variable, "").strip()
    if not raw:
        return DEFAULT_PORTS.get(process, 0)
    if not raw.isdigit() or int(raw) > 65_535:
        raise ValueError(f"{variable} must be a port number (0 turns metrics off), not {raw!r}")
    return int(raw)


def serve(process: str, *collectors: Collector, environ: dict[str, str] | None = None) -> int:
    """Register `collectors` and answer `/metrics` for `process` on its port; returns the
    port (0 when off or taken). A malformed port setting ends the process with its name."""
    try:
        port = port_of(process, environ)
    except ValueError as exc:  # a setting to fix: one line, no traceback
        raise SystemExit(f"{process}: {exc}") from None
    for collector in collectors:
        REGISTRY.register(collector)
    if port == 0:
        return 0
    host = (os.environ if environ is None else environ).get(HOST_VARIABLE) or "127.0.0.1"
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning(
            "%s metrics not served: port %d on %s is taken (%s); set "
            "BUZZER_%s_METRICS_PORT to a free port, or 0",
            process,
            port,
            host,
            exc.strerror or exc,
            process.upper(),
        )
        return 0
    log.info("%s metrics on http://%s:%d/metrics", process, host, port)
    return port
