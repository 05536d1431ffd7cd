"""After a crash the saved local chain can be behind what the database indexed (anvil saves
its state every few seconds; the database commits at once). `make run` must say so and change
nothing, instead of starting an indexer that takes it for a reorg deeper than it may undo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from migrations import libpq_url, upgrade
from scripts._stack import StackError, check_index_behind_chain
from tests.support import postgres
from tests.support.anvil import Anvil, start_anvil


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Anvil]:
    with start_anvil(log_path=tmp_path / "anvil.log") as node:
        node.call("anvil_mine", hex(10))
        yield node


@pytest.fixture
def indexed(pg_server: str) -> Iterator[str]:
    with postgres.fresh_database(pg_server, "buzzer_crash") as url:
        upgrade(url)
        yield url


def checkpoint(database_url: str, chain_id: int, number: int, block_hash: str) -> None:
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "INSERT INTO indexer_checkpoints (chain_id, block_number, block_hash,"
            " block_timestamp, finalized_block, head_block) VALUES (%s, %s, %s, 0, 0, %s)",
            (chain_id, number, block_hash, number),
        )


def test_a_chain_behind_the_database_stops_the_start_and_says_what_to_do(chain, indexed):
    checkpoint(indexed, chain.chain_id, 500, "0x" + "ab" * 32)  # indexed past the head
    with pytest.raises(StackError) as refused:
        check_index_behind_chain(indexed, chain.url, chain.chain_id, Path("/run/anvil-state.json"))
    message = str(refused.value)
    assert "the chain's head is block 10" in message and "block 500" in message
    assert "make reset" in message and "Nothing was changed" in message
    with psycopg.connect(libpq_url(indexed)) as conn:  # the database is as it was
        assert conn.execute("SELECT block_number FROM indexer_checkpoints").fetchone() == (500,)


def test_a_block_the_chain_has_with_another_hash_also_stops_it(chain, indexed):
    checkpoint(indexed, chain.chain_id, 5, "0x" + "cd" * 32)
    with pytest.raises(StackError, match="block 5"):
        check_index_behind_chain(indexed, chain.url, chain.chain_id, None)


def test_a_database_in_step_with_the_chain_starts(chain, indexed):
    block = chain.call("eth_getBlockByNumber", hex(7), False)
    checkpoint(indexed, chain.chain_id, 7, block["hash"])
    check_index_behind_chain(indexed, chain.url, chain.chain_id, None)  # no error
    with psycopg.connect(libpq_url(indexed)) as conn:
        conn.execute("DELETE FROM indexer_checkpoints")
    check_index_behind_chain(indexed, chain.url, chain.chain_id, None)  # nothing indexed yet
