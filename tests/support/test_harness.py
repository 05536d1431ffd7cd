"""Self-tests of the indexer test harness: every fixture and helper does what it says.

pytest tests/support                                   # embedded PostgreSQL
DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres pytest tests/support
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError

from api.settlement.merkle import Leaf
from migrations import libpq_url, sqlalchemy_url
from tests.support import postgres
from tests.support.anvil import CHALLENGE_PERIOD, WITHDRAW_DELAY, Anvil
from tests.support.chain import (
    ACTIVE,
    BID_CPC,
    ENDED,
    PAUSED,
    USDC,
    ChainDriver,
    DecodedEvent,
)
from tests.support.fixtures import FreshAnvil
from tests.support.flaky_rpc import FlakyRpc
from tests.support.tables import diff, snapshot

pytestmark = pytest.mark.anvil

CONTRACTS = {
    "PublisherRegistry",
    "CampaignRegistry",
    "PaymentEscrow",
    "PublisherPayout",
    "TestUSDC",
}


def names(events: list[DecodedEvent]) -> list[str]:
    return [e.key for e in events]


# -- PostgreSQL ------------------------------------------------------------------------------


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [r[0] for r in rows]


def _exists(server: str, url: str) -> bool:
    with psycopg.connect(server) as conn:
        name = postgres.database_name(url)
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


def test_database_url_is_a_new_empty_database(pg_server: str, database_url: str) -> None:
    assert database_url != pg_server
    assert postgres.database_name(database_url).startswith("buzzer_test_")
    assert _tables(database_url) == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (
            postgres.database_name(database_url),
        )
        conn.execute("CREATE TABLE t (x int)")


def test_fresh_database_is_dropped_even_with_open_connections(pg_server: str) -> None:
    with postgres.fresh_database(pg_server) as first, postgres.fresh_database(pg_server) as other:
        assert first != other
        lingering = psycopg.connect(first)  # an indexer's pool left open
        assert _exists(pg_server, first)
    assert not _exists(pg_server, first) and not _exists(pg_server, other)
    lingering.close()


def test_database_url_prefers_the_environment_and_says_when_it_is_down() -> None:
    down = postgres.database_url({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"})
    with pytest.raises(postgres.PostgresUnavailable, match="unset DATABASE_URL"), down:
        pass
    if os.environ.get("DATABASE_URL"):
        with postgres.database_url() as url:
            assert url == libpq_url(os.environ["DATABASE_URL"])


def test_url_helpers_keep_the_socket_host() -> None:
    embedded = "postgresql://postgres:@/postgres?host=/tmp/x"
    assert postgres.with_database(embedded, "db1") == "postgresql://postgres:@/db1?host=/tmp/x"
    assert sqlalchemy_url(embedded).startswith("postgresql+psycopg://postgres:@/postgres")
    assert libpq_url("postgresql+psycopg://u@h/d") == "postgresql://u@h/d"


# -- tables ----------------------------------------------------------------------------------


SCHEMA = """
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
CREATE TABLE events (
    id bigserial PRIMARY KEY, block_number bigint, tx bytea, args jsonb, tags text[],
    created_at timestamptz DEFAULT now(), indexed_at timestamptz DEFAULT clock_timestamp());
CREATE TABLE spends (block_number bigint NOT NULL, amount numeric)
    PARTITION BY RANGE (block_number);
CREATE TABLE spends_0 PARTITION OF spends FOR VALUES FROM (0) TO (100);
CREATE TABLE spends_1 PARTITION OF spends FOR VALUES FROM (100) TO (200);
CREATE TABLE checkpoints (id int PRIMARY KEY, updated_at timestamptz);
"""


def _fill(url: str, rows: list[tuple[Any, ...]], version: str, first_id: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO alembic_version VALUES (%s)", [version])
        conn.execute("SELECT setval('events_id_seq', %s)", [first_id])
        for row in rows:
            conn.execute(
                "INSERT INTO events (block_number, tx, args, tags) VALUES (%s, %s, %s, %s)", row
            )
        conn.execute("INSERT INTO spends VALUES (5, 1.5), (150, NULL)")
        conn.execute("INSERT INTO checkpoints VALUES (%s, now())", [first_id])


def test_snapshot_ignores_ids_timestamps_order_and_alembic(
    database_url: str, make_database: Any
) -> None:
    rows = [(1, b"\x01", '{"b": 1, "a": [1, 2]}', ["x"]), (2, b"\x02", "null", [])]
    other = make_database()
    _fill(database_url, rows, "aaa", 1)
    _fill(other, list(reversed(rows)), "bbb", 1_000)  # other ids, times, order, migration

    a, b = snapshot(database_url), snapshot(other)
    assert a == b, diff(a, b)
    assert diff(a, b) == ""
    assert set(a) == {"events", "spends", "checkpoints"}  # partitions via their parent only
    assert a.columns["events"] == ["block_number", "tx", "args", "tags"]
    assert a["events"][0] == (1, b"\x01", '{"a":[1,2],"b":1}', ("x",))
    assert a["spends"] == [(5, Decimal("1.5")), (150, None)]
    assert a["checkpoints"] == [()]  # only ignored columns: the row count still compares
    assert set(snapshot(database_url, exclude=["spends"])) == {"events", "checkpoints"}
    assert set(snapshot(database_url, tables=["events"])) == {"events"}

    with psycopg.connect(other) as conn:
        conn.execute("UPDATE events SET block_number = 3 WHERE block_number = 2")
    changed = diff(a, snapshot(other))
    assert "table events: 2 vs 2 rows (block_number, tx, args, tags)" in changed
    assert "  - (2, b'\\x02', None, ())" in changed
    assert "  + (3, b'\\x02', None, ())" in changed


# -- anvil and the deployment ----------------------------------------------------------------


def test_anvil_answers_with_the_deployment(anvil: Anvil, deployment: dict[str, Any]) -> None:
    assert int(anvil.call("eth_chainId"), 16) == 1337
    assert anvil.block_number() >= deployment["start_block"]
    assert set(deployment["contracts"]) == CONTRACTS
    codes = [anvil.call("eth_getCode", a, "latest") for a in deployment["contracts"].values()]
    assert all(len(code) > 2 for code in codes)
    assert set(deployment["roles"]) == {
        "admin",
        "escrow_settler",
        "payout_settler",
        "oracle",
        "guardian",
        "treasury",
    }


def test_isolation_first_test_changes_the_chain(chain: ChainDriver) -> None:
    chain.register_publisher(5, "isolation")
    chain.mine(3)
    assert chain.call("PublisherRegistry", "publisher_count") == 1


def test_isolation_second_test_sees_a_freshly_deployed_chain(
    chain: ChainDriver, deployment_record: Any
) -> None:
    assert chain.block_number() == deployment_record.last_block
    assert chain.call("PublisherRegistry", "publisher_count") == 0


# -- the chain driver ------------------------------------------------------------------------


def test_every_action_is_a_mined_transaction_with_its_event(chain: ChainDriver) -> None:
    ev = chain.events
    publisher, other = chain.account(7), chain.account(8)
    assert names(ev(chain.register_publisher(7, "pub-7"))) == [
        "PublisherRegistry.PublisherRegistered"
    ]
    chain.register_publisher(8, "pub-8", payment_wallet=9)
    assert ev(chain.set_quality_score(7, 80))[0].args == {"publisher": publisher, "score": 80}
    domain = ev(chain.set_domain_verified(publisher, "Example.org"))[0]
    assert domain.args["domain_hash"] == Web3.keccak(text="example.org")
    assert ev(chain.set_suspended(7))[0].args["suspended"] is True
    assert names(ev(chain.set_suspended(7, False))) == ["PublisherRegistry.PublisherSuspended"]
    wallet = ev(chain.update_payment_wallet(8, other))[0]
    assert wallet.args["previous_wallet"] == chain.account(9)

    campaign = chain.register_campaign(5, "usdc", BID_CPC, 2 * USDC)
    eth_campaign = chain.register_campaign(6, "eth")
    assert (campaign, eth_campaign) == (1, 2)
    assert names(ev(chain.update_campaign_status(5, campaign, PAUSED))) == [
        "CampaignRegistry.CampaignStatusUpdated"
    ]
    chain.update_campaign_status(5, campaign, ACTIVE)
    assert names(ev(chain.mint_usdc(5, 1_000 * USDC))) == ["TestUSDC.Transfer"]
    deposit = ev(chain.deposit(5, campaign, 500 * USDC))
    assert names(deposit) == ["TestUSDC.Approval", "TestUSDC.Transfer", "PaymentEscrow.Deposited"]
    assert deposit[-1].args["amount"] == 500 * USDC
    assert names(ev(chain.deposit(6, eth_campaign, 10**18))) == ["PaymentEscrow.Deposited"]
    assert names(ev(chain.request_withdraw(5, campaign, 100 * USDC))) == [
        "PaymentEscrow.WithdrawRequested"
    ]
    assert names(ev(chain.cancel_withdraw(5, campaign))) == ["PaymentEscrow.WithdrawCancelled"]
    chain.request_withdraw(6, eth_campaign, 10**17)
    before = chain.timestamp()
    assert chain.increase_time(WITHDRAW_DELAY) >= before + WITHDRAW_DELAY
    assert names(ev(chain.withdraw(6, eth_campaign))) == ["PaymentEscrow.Withdrawn"]

    epoch = chain.current_epoch()
    with pytest.raises(ContractLogicError, match="epoch not ended"):
        chain.spend_batch(epoch, [campaign], [100 * USDC])
    assert chain.end_epoch(epoch) >= chain.call("CampaignRegistry", "epoch_end", epoch)
    assert chain.current_epoch() == epoch + 1
    spend = ev(chain.spend_batch(epoch, [campaign, eth_campaign, 99], [100 * USDC, 10**17, 1]))
    assert names(spend).count("PaymentEscrow.Spent") == 2
    assert [e.args["reason"] for e in spend if e.name == "SpendSkipped"] == ["unknown campaign"]
    assert names(spend)[-1] == "PaymentEscrow.EpochSpent"
    share = 100 * USDC * 8_500 // 10_000
    tree = chain.payout_tree(
        [Leaf(publisher, chain.usdc, share - 100), Leaf(other, chain.usdc, 100)]
    )
    assert names(ev(chain.post_root(tree))) == ["PublisherPayout.RootPosted"]
    assert names(ev(chain.revoke_root(1))) == ["PublisherPayout.RootRevoked"]
    assert ev(chain.post_root(tree))[0].args["root_id"] == 2
    with pytest.raises(ContractLogicError, match="root pending"):
        chain.post_root(tree)
    with pytest.raises(ContractLogicError, match="no current root"):
        chain.claim(tree, 7, "usdc")
    chain.increase_time(CHALLENGE_PERIOD)
    claimed = ev(chain.claim(tree, 7, "usdc"))
    assert names(claimed) == ["TestUSDC.Transfer", "PublisherPayout.Claimed"]
    assert claimed[-1].args["amount"] == share - 100
    assert chain.usdc_balance(7) == share - 100
    chain.claim(tree, other, "usdc")  # sent by the admin for an address
    assert chain.usdc_balance(other) == 100
    assert names(ev(chain.update_campaign_status(5, campaign, ENDED)))
    assert chain.block_number() == chain.last_receipts[-1]["blockNumber"]
    assert all(r["status"] == 1 for r in chain.last_receipts)


def test_x402_transfer_moves_exactly_the_amount_once(chain: ChainDriver) -> None:
    chain.mint_usdc(6, 10 * USDC)
    payer, payee, nonce = chain.account(6), chain.account(7), os.urandom(32)
    assert not chain.call("TestUSDC", "authorizationState", payer, nonce)
    receipt = chain.x402_transfer(6, payee, 1_234_567, nonce=nonce)
    events = chain.events(receipt)
    assert names(events) == ["TestUSDC.AuthorizationUsed", "TestUSDC.Transfer"]
    assert events[0].args == {"authorizer": payer, "nonce": nonce}
    assert receipt["from"] == chain.account(0)  # the facilitator pays the gas
    assert chain.usdc_balance(6) == 10 * USDC - 1_234_567
    assert chain.usdc_balance(7) == 1_234_567
    assert chain.call("TestUSDC", "authorizationState", payer, nonce) is True
    with pytest.raises(ContractLogicError, match="authorization is used"):
        chain.x402_transfer(6, payee, 1_234_567, nonce=nonce)
    assert chain.usdc_domain["name"] == "USD Coin" and chain.usdc_domain["version"] == "2"


def test_generate_activity_is_valid_counted_and_repeatable(chain: ChainDriver) -> None:
    start = chain.block_number()
    report = chain.generate_activity(600, seed=7)
    assert report.events >= 600
    logs = chain.logs(start + 1)
    assert len(logs) == report.events
    assert sum(report.by_event.values()) == report.events
    assert report.last_block == chain.block_number()
    assert report.first_block == start + 1
    assert len(report.by_action) >= 12, report.by_action
    # a second call reads the state back from the chain and goes on validly
    again = chain.generate_activity(200, seed=8)
    assert again.first_block == report.last_block + 1
    assert chain.rpc.call("anvil_getAutomine") is True


def test_fresh_anvil_reorgs_without_touching_the_session_chain(
    fresh_anvil: FreshAnvil, anvil: Anvil, deployment: dict[str, Any]
) -> None:
    assert fresh_anvil.url != anvil.url
    assert fresh_anvil.deployment == deployment
    assert (fresh_anvil.deployments_dir / "1337.json").exists()
    driver = fresh_anvil.chain
    driver.generate_activity(150, seed=3)
    head = driver.block_number()
    old = [driver.block(n)["hash"] for n in range(head - 2, head + 1)]
    kept = driver.block(head - 3)["hash"]
    tx = driver.tx_request(
        "PublisherRegistry", "register", "reorged", driver.account(29), sender=29
    )
    assert driver.reorg(3, [(tx, 1)]) == head
    new = [driver.block(n)["hash"] for n in range(head - 2, head + 1)]
    assert all(a != b for a, b in zip(old, new, strict=True))
    assert driver.block(head - 3)["hash"] == kept
    assert [e.name for e in driver.logs(head - 1, head - 1)] == ["PublisherRegistered"]
    driver.generate_activity(100, seed=4)  # the model re-reads the reorged state


# -- flaky RPC -------------------------------------------------------------------------------


def _post(url: str, body: Any) -> tuple[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return "ok", json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"http{exc.code}", None
    except (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError):
        return "dropped", None


def test_flaky_rpc_injects_every_fault_and_forwards_the_rest(
    anvil: Anvil, deployment: dict[str, Any]
) -> None:
    logs_call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "eth_getLogs",
        "params": [{"fromBlock": "0x0", "toBlock": "latest"}],
    }
    number_call = {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}
    rates = {"drop": 0.05, "http502": 0.05, "error": 0.1, "delay": 0.05, "empty_logs": 0.05}
    with FlakyRpc(anvil.url, seed=7, delay_range=(0.05, 0.1)) as proxy:
        proxy.configure(**rates)
        seen: dict[str, int] = {}
        delayed = 0
        for i in range(400):
            body = logs_call if i % 2 else number_call
            started = time.perf_counter()
            outcome, reply = _post(proxy.url, body)
            if outcome == "ok" and "error" in reply:
                outcome = f"rpc{reply['error']['code']}"
                expected = -32005 if body is logs_call else -32000
                assert reply["error"]["code"] == expected
            elif outcome == "ok" and body is logs_call and reply["result"] == []:
                outcome = "empty"
            delayed += time.perf_counter() - started >= 0.05
            seen[outcome] = seen.get(outcome, 0) + 1
        counts = proxy.counts
        assert counts["requests"] == 400
        assert seen["dropped"] == counts["drop"] > 0
        assert seen["http502"] == counts["http502"] > 0
        assert seen.get("rpc-32005", 0) + seen.get("rpc-32000", 0) == counts["error"]
        assert seen["rpc-32005"] > 0 and seen["rpc-32000"] > 0
        assert seen["empty"] == counts["empty_logs"] > 0
        assert counts["delay"] > 0 and delayed >= counts["delay"]
        assert counts["forwarded"] >= 0.7 * 400
        assert proxy.by_method["eth_getLogs"] == 200

        with proxy.healthy():  # web3 through the proxy, no faults
            w3 = Web3(Web3.HTTPProvider(proxy.url))
            assert w3.eth.chain_id == 1337
        batch = [number_call, {**number_call, "id": 3}]
        proxy.configure(drop=0, http502=0, error=1.0, delay=0, empty_logs=0)
        outcome, reply = _post(proxy.url, batch)
        assert [r["error"]["code"] for r in reply] == [-32000, -32000]


def test_flaky_rpc_fixture_fronts_the_session_anvil(flaky_rpc: FlakyRpc) -> None:
    flaky_rpc.configure(delay=0)
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    replies = [_post(flaky_rpc.url, call) for _ in range(50)]
    answered = [r for outcome, r in replies if outcome == "ok" and "result" in r]
    assert 30 <= len(answered) < 50
    assert all(r["result"] == "0x539" for r in answered)
    assert flaky_rpc.counts["requests"] == 50
    with pytest.raises(ValueError, match="sum to at most 1"):
        flaky_rpc.configure(drop=0.9, error=0.5)
