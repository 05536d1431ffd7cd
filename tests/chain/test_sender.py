"""The transaction sender against a real anvil: nonces, receipts, revert reasons, idempotent
rebroadcasts after a crash and fee bumps of a stuck transaction."""

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from api.core.chain import call_data
from chain.rpc import Rpc, RpcUnavailable
from chain.sender import (
    ChainSendError,
    NonceTaken,
    Sender,
    SignedTx,
    TxReverted,
    decode_revert,
)
from tests.support.anvil import free_port, start_anvil
from tests.support.chain import ADMIN, FIRST_USER, SETTLER, dev_account
from tests.support.fixtures import FreshAnvil
from tests.support.flaky_rpc import FlakyRpc

USER = FIRST_USER
MakeSender = Callable[..., Sender]


def mint(local: FreshAnvil, to: int, amount: int) -> tuple[str, str]:
    """(to, data) of TestUSDC.mint, which the admin (the minter) may call."""
    return local.chain.usdc, call_data("TestUSDC", "mint", dev_account(to).address, amount)


def spend_batch(local: FreshAnvil) -> tuple[str, str]:
    """(to, data) of PaymentEscrow.spend_batch: only the settler may call it."""
    escrow = local.deployment["contracts"]["PaymentEscrow"]
    return escrow, call_data("PaymentEscrow", "spend_batch", 1, [1], [1])


def nonce_of(local: FreshAnvil, index: int, tag: str = "latest") -> int:
    return int(local.node.call("eth_getTransactionCount", dev_account(index).address, tag), 16)


def nonce_used_by(local: FreshAnvil, receipt: dict[str, Any]) -> int:
    return int(local.node.call("eth_getTransactionByHash", receipt["transactionHash"])["nonce"], 16)


def mine_when_pending(local: FreshAnvil, tx_hash: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while local.node.call("eth_getTransactionByHash", tx_hash) is None:
        assert time.monotonic() < deadline, f"{tx_hash} never reached the pool"
        time.sleep(0.02)
    local.node.call("evm_mine")


def test_send_returns_the_receipt_of_a_successful_transaction(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    sender = make_sender(ADMIN)
    before = local.chain.usdc_balance(USER)

    receipt = sender.send(*mint(local, USER, 1_000))

    assert int(receipt["status"], 16) == 1
    assert local.chain.usdc_balance(USER) == before + 1_000
    mined = local.node.call("eth_getTransactionByHash", receipt["transactionHash"])
    assert mined["from"] == sender.address.lower()


def test_concurrent_sends_get_distinct_nonces_and_all_mine(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    sender = make_sender(ADMIN)
    first_nonce = nonce_of(local, ADMIN)
    before = local.chain.usdc_balance(USER)
    receipts: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def send_ten(offset: int) -> None:
        try:
            for i in range(10):
                receipts.append(sender.send(*mint(local, USER, offset + i)))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send_ten, args=(offset,)) for offset in (100, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    nonces = {nonce_used_by(local, r) for r in receipts}
    assert nonces == set(range(first_nonce, first_nonce + 20))
    assert local.chain.usdc_balance(USER) == before + sum(range(100, 110)) + sum(range(200, 210))


def test_a_revert_in_estimation_raises_the_contracts_reason_and_takes_no_nonce(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    sender = make_sender(USER)
    nonce = nonce_of(local, USER)

    with pytest.raises(TxReverted, match="escrow: caller is not settler") as caught:
        sender.prepare(*spend_batch(local))

    assert caught.value.reason == "escrow: caller is not settler"
    assert caught.value.tx_hash is None
    receipt = sender.send(dev_account(USER + 1).address, "0x", value=1)
    assert (
        int(local.node.call("eth_getTransactionByHash", receipt["transactionHash"])["nonce"], 16)
        == nonce
    )


def test_a_mined_revert_raises_the_reason_replayed_at_its_block(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    sender = make_sender(USER)
    tx = sender.prepare(*spend_batch(local), gas=200_000)  # no estimate: it is mined

    sender.broadcast(tx)
    with pytest.raises(TxReverted, match="escrow: caller is not settler") as caught:
        sender.wait(tx)

    assert caught.value.tx_hash == tx.hash
    assert int(sender.receipt(tx.hash)["status"], 16) == 0  # type: ignore[index]


def test_a_transaction_mined_out_of_gas_says_so(local: FreshAnvil, make_sender: MakeSender) -> None:
    sender = make_sender(ADMIN)
    tx = sender.prepare(*mint(local, USER, 1), gas=30_000)

    sender.broadcast(tx)
    with pytest.raises(TxReverted, match="out of gas"):
        sender.wait(tx)


def test_the_settler_passes_the_role_check_and_meets_the_next_one(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    escrow = local.deployment["contracts"]["PaymentEscrow"]
    data = call_data("PaymentEscrow", "spend_batch", 1, [], [])

    with pytest.raises(TxReverted, match="escrow: empty batch"):
        make_sender(SETTLER).send(escrow, data)


def test_broadcasting_the_same_transaction_twice_mines_it_once(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    sender = make_sender(ADMIN)
    before = local.chain.usdc_balance(USER)
    local.node.call("evm_setAutomine", False)
    tx = sender.prepare(*mint(local, USER, 7))

    assert sender.broadcast(tx) == tx.hash
    assert sender.broadcast(tx) == tx.hash  # the node has it already
    local.node.call("evm_mine")
    assert sender.broadcast(tx) == tx.hash  # and once mined, "nonce too low" is ours

    assert int(sender.wait(tx)["status"], 16) == 1
    assert local.chain.usdc_balance(USER) == before + 7


@pytest.mark.parametrize("mined_before_crash", [True, False])
def test_a_restarted_sender_resumes_the_persisted_transaction_and_mines_it_once(
    local: FreshAnvil, make_sender: MakeSender, mined_before_crash: bool
) -> None:
    before = local.chain.usdc_balance(USER)
    nonce = nonce_of(local, ADMIN)
    local.node.call("evm_setAutomine", mined_before_crash)
    crashed = make_sender(ADMIN)
    saved = crashed.prepare(*mint(local, USER, 50)).to_json()
    crashed.broadcast(SignedTx.from_json(saved))
    del crashed

    restarted = make_sender(ADMIN)
    restored = SignedTx.from_json(saved)
    if not mined_before_crash:
        threading.Timer(0.3, local.node.call, ("evm_mine",)).start()
    receipt = restarted.send_prepared(restored)

    assert receipt["transactionHash"] == restored.hash
    assert nonce_of(local, ADMIN) == nonce + 1
    assert local.chain.usdc_balance(USER) == before + 50


def test_a_stuck_transaction_is_replaced_by_a_fee_bump_of_the_same_content(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    sender = make_sender(ADMIN, bump_after=0.3, receipt_timeout=20)
    before = local.chain.usdc_balance(USER)
    nonce = nonce_of(local, ADMIN)
    local.node.call("evm_setAutomine", False)
    versions: list[SignedTx] = []
    outcome: dict[str, Any] = {}

    def send() -> None:
        outcome["receipt"] = sender.send(*mint(local, USER, 9), persist=versions.append)

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 10
    while len(versions) < 2:
        assert time.monotonic() < deadline, "the stuck transaction was never bumped"
        time.sleep(0.02)
    mine_when_pending(local, versions[1].hash)
    thread.join(timeout=10)

    original, bump = versions[0], versions[1]
    assert (bump.nonce, bump.to, bump.data, bump.value, bump.gas) == (
        original.nonce,
        original.to,
        original.data,
        original.value,
        original.gas,
    )
    assert bump.max_fee * 8 >= original.max_fee * 9
    assert bump.priority_fee * 8 >= original.priority_fee * 9
    mined = [v.hash for v in versions if sender.receipt(v.hash) is not None]
    assert mined == [outcome["receipt"]["transactionHash"]]
    assert nonce_of(local, ADMIN) == nonce + 1
    assert local.chain.usdc_balance(USER) == before + 9


def test_a_rebroadcast_of_an_older_version_finds_the_mined_bump(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    sender = make_sender(ADMIN)
    local.node.call("evm_setAutomine", False)
    original = sender.prepare(*mint(local, USER, 3))
    sender.broadcast(original)
    bump = sender.bump(original)
    sender.broadcast(bump)
    local.node.call("evm_mine")

    assert sender.broadcast(bump) == bump.hash
    assert sender.wait(bump)["transactionHash"] == bump.hash
    assert sender.receipt(original.hash) is None


def test_the_nonce_counter_catches_up_after_another_process_used_the_key(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    start = nonce_of(local, ADMIN)
    before = local.chain.usdc_balance(USER)
    ours = make_sender(ADMIN)
    ours.send(*mint(local, USER, 1))
    make_sender(ADMIN).send(*mint(local, USER, 2))  # another process with the same key

    receipt = ours.send(*mint(local, USER, 3))

    assert nonce_used_by(local, receipt) == start + 2
    assert local.chain.usdc_balance(USER) == before + 6


def test_a_transaction_whose_nonce_another_took_fails_clearly_and_the_next_gets_a_fresh_one(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    ours = make_sender(ADMIN)
    stale = ours.prepare(*mint(local, USER, 1))
    make_sender(ADMIN).send(*mint(local, USER, 2))  # another process takes that nonce

    with pytest.raises(NonceTaken, match=f"nonce {stale.nonce}"):
        ours.broadcast(stale)
    receipt = ours.send(*mint(local, USER, 3))

    assert int(receipt["status"], 16) == 1
    assert nonce_of(local, ADMIN) == stale.nonce + 2


def test_waiting_on_a_transaction_another_replaced_fails_instead_of_hanging(
    local: FreshAnvil, make_sender: MakeSender
) -> None:
    ours = make_sender(ADMIN)
    local.node.call("evm_setAutomine", False)
    tx = ours.prepare(*mint(local, USER, 1))
    ours.broadcast(tx)
    other_process = make_sender(ADMIN)
    foreign = other_process.bump(other_process.prepare(*mint(local, USER, 2), nonce=tx.nonce))
    other_process.broadcast(foreign)
    local.node.call("evm_mine")

    started = time.monotonic()
    with pytest.raises(NonceTaken, match=tx.hash):
        ours.wait(tx, timeout=30)
    assert time.monotonic() - started < 5


def test_sends_survive_a_flaky_node(local: FreshAnvil) -> None:
    before = local.chain.usdc_balance(USER)
    key = "0x" + bytes(dev_account(ADMIN).key).hex()
    with FlakyRpc(local.url, seed=7, drop=0.1, http502=0.1, error=0.15) as proxy:
        rpc = Rpc(proxy.url, retries=8, backoff=0.01, max_backoff=0.05)
        sender = Sender(rpc, key, local.node.chain_id, poll_interval=0.02)
        receipts = [sender.send(*mint(local, USER, amount)) for amount in (1, 2, 3, 4, 5)]
        rpc.close()

    assert proxy.counts["drop"] + proxy.counts["http502"] + proxy.counts["error"] > 0
    assert len({nonce_used_by(local, r) for r in receipts}) == 5
    assert local.chain.usdc_balance(USER) == before + 15


def test_a_chain_without_a_base_fee_gets_a_legacy_transaction() -> None:
    with start_anvil(extra_args=["--hardfork", "berlin"]) as node:
        rpc = Rpc(node.url, retries=2, backoff=0.05)
        sender = Sender(rpc, "0x" + bytes(dev_account(ADMIN).key).hex(), node.chain_id)
        to = dev_account(USER).address
        before = int(node.call("eth_getBalance", to, "latest"), 16)

        receipt = sender.send(to, "0x", value=123)

        mined = node.call("eth_getTransactionByHash", receipt["transactionHash"])
        assert int(mined["type"], 16) == 0
        assert int(node.call("eth_getBalance", to, "latest"), 16) == before + 123
        rpc.close()


def test_an_unreachable_node_is_reported_with_its_address() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    key = "0x" + bytes(dev_account(ADMIN).key).hex()
    sender = Sender(Rpc(url, retries=1, backoff=0.01), key, 1337)

    with pytest.raises(RpcUnavailable, match=url):
        sender.send(dev_account(USER).address, "0x", value=1)


def test_a_node_of_another_chain_is_refused_before_signing(rpc: Rpc, local: FreshAnvil) -> None:
    key = "0x" + bytes(dev_account(ADMIN).key).hex()

    with pytest.raises(ChainSendError, match="is chain 1337, not 8453"):
        Sender(rpc, key, 8453).prepare(dev_account(USER).address, "0x", value=1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            "0x08c379a0"
            "0000000000000000000000000000000000000000000000000000000000000020"
            "0000000000000000000000000000000000000000000000000000000000000005"
            "6f6f707321000000000000000000000000000000000000000000000000000000",
            "oops!",
        ),
        (
            "0x4e487b710000000000000000000000000000000000000000000000000000000000000011",
            "panic 0x11",
        ),
        ("0xdeadbeef", "0xdeadbeef"),
        ("0x", None),
    ],
)
def test_revert_data_decodes_to_a_readable_reason(data: str, reason: str | None) -> None:
    assert decode_revert(data) == reason
