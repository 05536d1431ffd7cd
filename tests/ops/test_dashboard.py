"""The Grafana dashboard in the repo is valid JSON whose every query names metrics the
processes export: a renamed metric cannot leave a panel silently empty."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import indexer.runner  # noqa: F401 (each defines or uses its metrics on import)
from observe import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "buzzer.json"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exported() -> set[str]:
    names = set(metrics.COLLECTED)
    for family in REGISTRY.collect():
        if family.name.startswith("buzzer_"):
            names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return names


def test_every_panel_queries_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {name for q in queries for name in re.findall(r"\bbuzzer_[a-z0-9_]+\b", q)}
    assert named, "the dashboard queries no Buzzer metric"
    assert named - exported() == set()
    # and every metric the issue lists has a panel
    wanted = {
        "buzzer_ad_decisions_total",
        "buzzer_ad_decision_seconds_bucket",
        "buzzer_x402_payments_total",
        "buzzer_x402_settlement_reverts_total",
        "buzzer_events_ingested_total",
        "buzzer_events_rejected_total",
        "buzzer_stream_backlog",
        "buzzer_indexer_head_block",
        "buzzer_indexer_lag_blocks",
        "buzzer_indexer_reorgs_total",
        "buzzer_settlement_epochs",
        "buzzer_watcher_verdicts_total",
        "buzzer_rpc_errors_total",
    }
    assert wanted - named == set()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
