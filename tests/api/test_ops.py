"""Health, readiness, metrics, request ids (on every log line of their request) and the error
shape for unknown routes."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api.core.settings import Settings
from api.main import ConfigurationError, create_app
from observe import logs
from tests.support.stack import Stack


def test_healthz_and_request_id(client):
    reply = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert reply.json() == {"status": "ok"}
    assert reply.headers["X-Request-ID"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32


def test_readyz_names_what_is_unreachable(settings):
    broken = settings.model_copy(
        update={"rpc_url": "http://127.0.0.1:9", "database_url": "postgresql://x@127.0.0.1:9/x"}
    )
    with TestClient(create_app(broken)) as client:
        reply = client.get("/readyz")
    assert reply.status_code == 503
    checks = reply.json()["error"]["details"]
    assert checks["redis"] == "ok"
    assert checks["rpc"].startswith("unreachable")
    assert checks["postgres"].startswith("unreachable")


def test_metrics_count_requests(client):
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'buzzer_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_unknown_route_uses_the_error_shape(client):
    reply = client.get("/api/v1/nothing-here")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


def test_the_app_refuses_to_start_without_a_real_secret(settings):
    with pytest.raises(ConfigurationError, match="BUZZER_JWT_SECRET"):
        create_app(Settings(**{**settings.model_dump(), "jwt_secret": "short"}))


def test_readyz_is_ready_with_postgres_redis_and_the_chain(settings, pg_server, anvil_session):
    live = settings.model_copy(update={"rpc_url": anvil_session.url, "database_url": pg_server})
    with TestClient(create_app(live)) as client:
        reply = client.get("/readyz")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "redis": "ok", "rpc": "ok"},
    }


def test_a_flood_of_readyz_opens_no_connection_per_probe(settings, pg_server, anvil_session):
    """200 concurrent probes share one dependency check on the app's pool: Postgres sees a
    handful of new sessions, not one per probe."""
    live = settings.model_copy(update={"rpc_url": anvil_session.url, "database_url": pg_server})

    def sessions() -> int:
        with psycopg.connect(pg_server, autocommit=True) as db:
            row = db.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0])

    with TestClient(create_app(live)) as client:
        before = sessions()
        with ThreadPoolExecutor(max_workers=50) as pool:
            statuses = list(pool.map(lambda _: client.get("/readyz").status_code, range(200)))
        opened = sessions() - before

    assert statuses == [200] * 200
    assert opened <= 10, f"{opened} Postgres sessions for 200 probes"


def test_a_serving_replica_answers_only_the_hot_path(settings):
    serving = settings.model_copy(update={"api_role": "serving"})
    with TestClient(create_app(serving)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/.well-known/jwks.json").status_code == 200
        assert client.get("/x402/ad").status_code == 422  # there, and asks for its parameters
        assert client.get("/track/click/not-a-token").status_code != 404
        for elsewhere in ("/api/v1/auth/nonce", "/", "/publisher", "/api/v1/settlement/epochs"):
            assert client.get(elsewhere).status_code == 404, elsewhere
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/auth/nonce").status_code == 200


def test_a_request_id_is_on_its_json_log_line(stack: Stack) -> None:
    """The API as served (uvicorn, its log a file): one JSON object per line, the access
    line of a request carrying the id the caller sent."""
    rid = "ops-" + uuid.uuid4().hex
    reply = httpx.get(f"{stack.api_url}/.well-known/jwks.json", headers={"X-Request-ID": rid})
    assert reply.headers["X-Request-ID"] == rid
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(x) for x in stack.log("api", 200).splitlines() if rid in x]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (line,) = lines
    assert line["request_id"] == rid and line["process"] == "api"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/.well-known/jwks.json", 200)
    assert line["level"] == "info" and line["timestamp"].endswith("Z")


def test_probes_leave_no_access_line_at_info(settings) -> None:
    """Liveness and readiness probes come every few seconds from every orchestrator: their
    access lines are DEBUG, like the hot path's, unless they fail; other requests keep
    theirs at INFO."""
    out = io.StringIO()
    handler = logs.configure("api", level="INFO", format="json", stream=out)
    try:
        with TestClient(create_app(settings)) as client:
            client.get("/healthz", headers={"X-Request-ID": "probe-1"})
            ready = client.get("/readyz", headers={"X-Request-ID": "probe-2"})
            client.get("/.well-known/jwks.json", headers={"X-Request-ID": "keys-1"})
    finally:
        logging.getLogger().removeHandler(handler)
    ids = [json.loads(x).get("request_id") for x in out.getvalue().splitlines()]
    assert "keys-1" in ids
    assert "probe-1" not in ids
    assert ("probe-2" in ids) == (ready.status_code >= 500)  # a failing probe is logged


def test_every_line_logged_during_a_request_has_its_id(settings) -> None:
    out = io.StringIO()
    handler = logs.configure("api", format="json", stream=out)
    app = create_app(settings)

    @app.get("/boom-log")
    def noisy() -> dict[str, str]:  # another module's logger, in the threadpool
        logging.getLogger("api.ads").warning("something odd", extra={"slot_id": "slot-1"})
        return {}

    try:
        with TestClient(app) as client:
            client.get("/boom-log", headers={"X-Request-ID": "rid-42"})
        logging.getLogger("api").warning("outside any request")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    odd = next(x for x in lines if x["event"] == "something odd")
    assert (odd["request_id"], odd["slot_id"], odd["logger"]) == ("rid-42", "slot-1", "api.ads")
    assert next(x for x in lines if x["event"] == "outside any request").get("request_id") is None


def test_a_terminal_gets_readable_lines_and_bad_settings_are_named() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    handler = logs.configure("indexer", stream=out)
    try:
        logging.getLogger("indexer").info("indexed to block %d", 42)
    finally:
        logging.getLogger().removeHandler(handler)
    text = out.getvalue()
    assert "indexed to block 42" in text and not text.lstrip().startswith("{")
    with pytest.raises(logs.ConfigError, match="BUZZER_LOG_FORMAT"):
        logs.configure("api", format="xml")
    with pytest.raises(logs.ConfigError, match="LOG_LEVEL"):
        logs.configure("api", level="loud")


def test_the_indexer_reports_head_and_lag(stack: Stack) -> None:
    stack.chain.mine(3)
    stack.index_here()
    head = int(stack.anvil.call("eth_blockNumber"), 16)
    assert REGISTRY.get_sample_value("buzzer_indexer_head_block") == head
    assert REGISTRY.get_sample_value("buzzer_indexer_block") == head
    assert REGISTRY.get_sample_value("buzzer_indexer_lag_blocks") == 0
