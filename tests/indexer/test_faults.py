"""Faults the indexer must survive: SIGKILL at random points, a flaky RPC, a second
instance, and bad configuration (one clear line and a non-zero exit, not a traceback)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from tests.indexer.helpers import (
    cli,
    cli_env,
    core_event_count,
    core_logs,
    index_to_head,
    projections,
    spawn,
)
from tests.support.tables import diff


@pytest.fixture(autouse=True)
def _deployments(monkeypatch, deployments_dir):
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(deployments_dir))


def checkpoint_of(database_url: str) -> int | None:
    try:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT block_number FROM indexer_checkpoints").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None else int(row[0])


def test_sigkill_mid_backfill_loses_and_doubles_nothing(
    chain, database_url, make_database, deployments_dir
):
    chain.generate_activity(2_000, seed=21, max_txs_per_block=3)
    head = chain.block_number()
    env = cli_env(
        chain.rpc_url,
        database_url,
        deployments_dir,
        INDEXER_INITIAL_RANGE="1",
        INDEXER_MAX_RANGE="2",
        INDEXER_TARGET_LOGS="4",
    )
    rng = random.Random(5)
    killed_midway = 0
    for _ in range(5):
        # kill at a random point: after a random number of further blocks were committed
        target = (checkpoint_of(database_url) or 0) + rng.randint(5, 60)
        process = spawn("run", "--exit-at-head", env=env)
        while process.poll() is None and (checkpoint_of(database_url) or 0) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if (checkpoint_of(database_url) or 0) < head:
            killed_midway += 1
    assert killed_midway >= 4, "the kills should land while the backfill is running"

    finished = cli("run", "--exit-at-head", env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]

    clean = make_database()
    index_to_head(chain.rpc_url, clean)
    assert diff(projections(database_url), projections(clean)) == ""
    assert core_event_count(database_url) == len(core_logs(chain))


def test_flaky_rpc_gives_the_same_tables(chain, flaky_rpc, database_url, make_database):
    chain.generate_activity(600, seed=22, max_txs_per_block=5)
    flaky_rpc.configure(drop=0.08, http502=0.08, error=0.15, delay=0.04)

    index_to_head(flaky_rpc.url, database_url, initial_range=4, max_range=8)

    assert all(flaky_rpc.counts[kind] > 0 for kind in ("drop", "http502", "error", "delay"))
    direct = make_database()
    index_to_head(chain.rpc_url, direct)
    assert diff(projections(database_url), projections(direct)) == ""


def test_empty_log_answers_are_cross_checked_against_block_blooms(
    chain, flaky_rpc, database_url, make_database
):
    chain.generate_activity(300, seed=26, max_txs_per_block=5)
    flaky_rpc.configure(drop=0, http502=0, error=0, delay=0, empty_logs=0.5)

    # blooms are checked inside the unfinalized window: make it hold the whole chain, the
    # deployment's blocks (whose constructors log the configuration) included
    window = chain.block_number() + 1
    index_to_head(flaky_rpc.url, database_url, initial_range=3, max_range=3, reorg_window=window)

    assert flaky_rpc.counts["empty_logs"] > 0
    direct = make_database()
    index_to_head(chain.rpc_url, direct)
    assert diff(projections(database_url), projections(direct)) == ""


def test_a_second_indexer_waits_and_takes_over(chain, database_url, deployments_dir, tmp_path):
    chain.generate_activity(100, seed=23)
    env = cli_env(chain.rpc_url, database_url, deployments_dir)
    leader = spawn("run", env=env)
    deadline = time.monotonic() + 60
    while checkpoint_of(database_url) != chain.block_number():
        assert time.monotonic() < deadline, "the first indexer never caught up"
        time.sleep(0.2)
    follower_log = tmp_path / "follower.log"
    with follower_log.open("w") as out:
        follower = subprocess.Popen(
            leader.args,
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        while "another indexer leads" not in follower_log.read_text():
            assert time.monotonic() < deadline, "the second indexer never said it waits"
            time.sleep(0.2)
        chain.generate_activity(50, seed=24)
        while checkpoint_of(database_url) != chain.block_number():
            assert time.monotonic() < deadline, "the leader stopped following"
            time.sleep(0.2)
        assert "indexed to block" not in follower_log.read_text()  # the follower wrote nothing

        leader.send_signal(signal.SIGKILL)
        leader.wait()
        chain.generate_activity(50, seed=25)
        deadline = time.monotonic() + 60
        while checkpoint_of(database_url) != chain.block_number():
            assert time.monotonic() < deadline, "the follower did not take over"
            time.sleep(0.2)
        assert "indexed to block" in follower_log.read_text()
        assert core_event_count(database_url) == len(core_logs(chain))
    finally:
        for process in (leader, follower):
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"RPC_URL": "http://127.0.0.1:9"}, "cannot reach RPC at http://127.0.0.1:9"),
        ({"CHAIN_ID": "8453"}, "CHAIN_ID is 8453 but the RPC"),
        ({"BUZZER_DEPLOYMENTS_DIR": "{empty}"}, "no deployments file"),
        ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}, "cannot use the database"),
        ({"INDEXER_REORG_WINDOW": "many"}, "INDEXER_REORG_WINDOW must be an integer"),
    ],
    ids=[
        "unreachable-rpc",
        "wrong-chain",
        "no-deployments",
        "no-database",
        "bad-database",
        "bad-int",
    ],
)
def test_bad_configuration_is_one_clear_line(
    chain, database_url, deployments_dir, tmp_path, change, expected
):
    env = cli_env(chain.rpc_url, database_url, deployments_dir)
    env.update({k: v.replace("{empty}", str(tmp_path)) for k, v in change.items()})

    done = cli("run", "--exit-at-head", env=env, timeout=60)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and expected in lines[0], done.stderr
