"""On a real network the payment token is Circle's USDC: the indexer keeps the x402 payments
to publishers' payment wallets and nothing else of the token. Run on anvil with Base's chain
ids and a token the deployments file does not call TestUSDC (Base is not reachable here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from web3 import Web3

from chain.contracts import BASE_USDC, Deployment, load_abi, payment_token_address
from indexer import store
from indexer.runner import Indexer
from migrations import upgrade
from tests.indexer.helpers import projections, settings
from tests.support.anvil import start_anvil
from tests.support.chain import ADMIN, ChainDriver, dev_account
from tests.support.tables import diff

BUILD = Path(__file__).resolve().parents[2] / ".build" / "__local__.json"
USDC = 10**6
# dev accounts: publishers 5 and 6, their wallets 7, 8 and (after a switch) 9, payers 10-11,
# someone who is no publisher's wallet 12
PUB_A, PUB_B, WALLET_A, WALLET_B, WALLET_A2, PAYER, PAYER2, STRANGER = 5, 6, 7, 8, 9, 10, 11, 12


def _deploy(w3: Web3, name: str, *args: Any) -> tuple[str, int]:
    contract_type = json.loads(BUILD.read_text())["contractTypes"][name]
    factory = w3.eth.contract(
        abi=contract_type["abi"], bytecode=contract_type["deploymentBytecode"]["bytecode"]
    )
    admin = dev_account(ADMIN)
    tx = factory.constructor(*args).build_transaction(
        {"from": admin.address, "nonce": w3.eth.get_transaction_count(admin.address)}
    )
    signed = admin.sign_transaction(dict(tx))
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    return str(receipt["contractAddress"]), int(receipt["blockNumber"])


@pytest.fixture(params=[84532, 8453], ids=["base-sepolia-id", "base-id"])
def base_like(request, tmp_path, monkeypatch) -> Iterator[tuple[ChainDriver, str]]:
    """An anvil with Base's chain id, the registry, and an EIP-3009 token the deployments
    file names `USDC` (its address given as PAYMENT_TOKEN, as on Base)."""
    with start_anvil(chain_id=request.param, log_path=tmp_path / "anvil.log") as node:
        w3 = Web3(Web3.HTTPProvider(node.url))
        registry, start_block = _deploy(w3, "PublisherRegistry")
        token, _ = _deploy(w3, "TestUSDC", "USD Coin", "USDC", "USD Coin", "2")
        directory = tmp_path / "deployments"
        directory.mkdir()
        (directory / f"{request.param}.json").write_text(
            json.dumps(
                {
                    "chain_id": request.param,
                    "contracts": {"PublisherRegistry": registry, "USDC": token},
                    "start_block": start_block,
                }
            )
        )
        monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(directory))
        # the driver signs with the test token's ABI; the indexer only knows the address
        driver = ChainDriver(
            node.url,
            {
                "chain_id": request.param,
                "contracts": {"PublisherRegistry": registry, "TestUSDC": token},
            },
        )
        yield driver, token


def rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query).fetchall()


def payments(database_url: str) -> set[tuple[str, int]]:
    return {
        (pay_to, int(amount))
        for pay_to, amount in rows(database_url, "SELECT pay_to, amount FROM x402_payments_onchain")
    }


def token_receivers(database_url: str) -> set[str]:
    return {
        args["receiver"]
        for (args,) in rows(
            database_url,
            "SELECT args FROM chain_events WHERE contract = 'PaymentToken' AND event = 'Transfer'",
        )
    }


def indexer_for(chain: ChainDriver, database_url: str, token: str, **overrides: Any) -> Indexer:
    upgrade(database_url)
    return Indexer(
        settings(
            chain.rpc_url, database_url, chain_id=chain.chain_id, payment_token=token, **overrides
        )
    )


def to_head(chain: ChainDriver, database_url: str, token: str, **overrides: Any) -> None:
    indexer = indexer_for(chain, database_url, token, **overrides)
    try:
        indexer.run(until_head=True)
    finally:
        indexer.close()


def test_only_payments_to_publishers_wallets_are_kept_and_history_follows_the_wallets(
    base_like, database_url, make_database, monkeypatch
):
    chain, token = base_like
    wallet = {i: chain.account(i).lower() for i in (WALLET_A, WALLET_B, WALLET_A2, STRANGER)}
    chain.mint_usdc(PAYER, 100 * USDC)
    chain.mint_usdc(PAYER2, 100 * USDC)
    chain.register_publisher(PUB_A, "pub-a", WALLET_A)
    chain.x402_transfer(PAYER, WALLET_A, 11)
    chain.x402_transfer(PAYER, STRANGER, 12)  # an x402 payment to no publisher
    chain.transact("TestUSDC", "transfer", chain.account(STRANGER), 13, sender=PAYER2)
    chain.x402_transfer(PAYER2, WALLET_B, 21)  # B is no publisher's wallet yet
    chain.x402_transfer(PAYER2, WALLET_A2, 31)  # nor is A2

    to_head(chain, database_url, token)
    assert payments(database_url) == {(wallet[WALLET_A], 11)}
    assert token_receivers(database_url) == {wallet[WALLET_A]}  # mints and the rest: not read

    # B becomes known: its earlier payment is read back
    chain.register_publisher(PUB_B, "pub-b", WALLET_B)
    chain.x402_transfer(PAYER, WALLET_B, 22)
    to_head(chain, database_url, token)
    assert payments(database_url) == {
        (wallet[WALLET_A], 11),
        (wallet[WALLET_B], 21),
        (wallet[WALLET_B], 22),
    }

    # A switches to A2: A2's history comes in, A keeps what it got while it was A's wallet
    chain.update_payment_wallet(PUB_A, WALLET_A2)
    chain.x402_transfer(PAYER, WALLET_A, 14)  # after the switch: not ours
    chain.x402_transfer(PAYER, WALLET_A2, 32)
    # a small range size: the backfill takes several chunks; it dies while writing its second
    # one, as a crash would, and the next run resumes from the first one's stored progress
    real_write = store.write_backfill
    chunks: list[int] = []

    def crash_on_second_chunk(*args: Any) -> None:
        chunks.append(args[-1])
        if len(chunks) == 2:
            raise KeyboardInterrupt("killed")
        real_write(*args)

    monkeypatch.setattr(store, "write_backfill", crash_on_second_chunk)
    indexer = indexer_for(chain, database_url, token, max_range=2)
    try:
        with pytest.raises(KeyboardInterrupt):
            indexer.run(until_head=True)
        (job,) = store.pending_backfills(indexer.conn, indexer.chain_id)
        assert (job.wallet, job.next_block) == (wallet[WALLET_A2], chunks[0] + 1)
    finally:
        indexer.close()
    monkeypatch.setattr(store, "write_backfill", real_write)
    to_head(chain, database_url, token)
    expected = {
        (wallet[WALLET_A], 11),
        (wallet[WALLET_B], 21),
        (wallet[WALLET_B], 22),
        (wallet[WALLET_A2], 31),
        (wallet[WALLET_A2], 32),
    }
    assert payments(database_url) == expected
    assert wallet[STRANGER] not in token_receivers(database_url)
    assert rows(database_url, "SELECT count(*) FROM payment_backfills") == [(0,)]

    # the same rows as indexing the whole chain in one range, and no event twice
    rebuilt = make_database()
    to_head(chain, rebuilt, token, initial_range=100_000)
    assert payments(rebuilt) == expected
    assert diff(projections(database_url), projections(rebuilt)) == ""


def test_the_payment_token_is_the_configured_one_or_usdc_on_base():
    core = {"PublisherRegistry": "0x" + "11" * 20}
    assert payment_token_address(Deployment(8453, core, 0)) == BASE_USDC[8453]
    assert payment_token_address(Deployment(84532, core, 0)) == BASE_USDC[84532]
    local = Deployment(31337, {**core, "TestUSDC": "0x" + "22" * 20}, 0)
    assert payment_token_address(local) == Web3.to_checksum_address("0x" + "22" * 20)
    configured = "0x" + "33" * 20
    assert payment_token_address(local, configured) == Web3.to_checksum_address(configured)
    assert payment_token_address(Deployment(31337, core, 0)) is None
    with pytest.raises(Exception, match="PAYMENT_TOKEN is not an address"):
        payment_token_address(local, "usdc")
    assert load_abi("TestUSDC")  # the driver's token ABI is compiled
