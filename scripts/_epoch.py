"""`make epoch`: on the local chain of a running `make run`, move the chain's clock past the
current epoch's end and the IVT hold, settle it (`python -m api.settlement run`), then move
past the payout's challenge period so the new root is claimable: a settlement and a claim in
minutes instead of days. Refused on any chain but the local one (1337).

    python scripts/_epoch.py

It reads the running stack's services from `<run dir>/stack.json` (written by `make run`).
The chain's clock only moves forward, and the running stack's clock (what it serves and
tracks) follows it through `<run dir>/clock-offset`, so the next traffic lands in the new
epoch. While settlement waits for its transactions to be final, a block is mined every
second (the local chain mines only on a transaction otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts._stack import (
    LOCAL_CHAIN_ID,
    PROJECT_ROOT,
    StackError,
    chain_time,
    follow_chain_clock,
    rpc,
    run_dir,
    services_env,
)

MARGIN = 60  # seconds past each deadline


class EpochError(Exception):
    pass


def call(rpc_url: str, name: str, method: str, *args: Any) -> int:
    from web3 import Web3

    from chain.contracts import load_abi, load_deployment

    deployment = load_deployment(LOCAL_CHAIN_ID)
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    contract = w3.eth.contract(
        address=Web3.to_checksum_address(deployment.address(name)), abi=load_abi(name)
    )
    return int(getattr(contract.functions, method)(*args).call())


def move_to(rpc_url: str, timestamp: int, blocks: int = 4) -> None:
    """Mine a block at `timestamp` (when the chain is behind it), then a few more so the
    indexer's finalized block passes it."""
    if chain_time(rpc_url) < timestamp:
        rpc(rpc_url, "evm_mine", [timestamp])
    for _ in range(blocks):
        rpc(rpc_url, "evm_mine", [])


@contextmanager
def mining(rpc_url: str, interval: float = 1.0) -> Iterator[None]:
    """Mine a block every `interval` seconds until the block ends, so what waits for finality
    (the indexer's finalized block) waits seconds rather than for its timeout."""
    stop = threading.Event()

    def mine() -> None:
        while not stop.wait(interval):
            # a failed tick is tried again next time; settlement reports a chain that is gone
            with suppress(StackError, OSError):
                rpc(rpc_url, "evm_mine", [])

    miner = threading.Thread(target=mine, name="miner", daemon=True)
    miner.start()
    try:
        yield
    finally:
        stop.set()
        miner.join()


def wait_indexed(database_url: str, rpc_url: str, timeout: float = 60.0) -> None:
    import psycopg

    from migrations import libpq_url

    head = int(rpc(rpc_url, "eth_blockNumber"), 16)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(libpq_url(database_url)) as conn:
            row = conn.execute(
                "SELECT block_number, finalized_block FROM indexer_checkpoints WHERE chain_id = %s",
                (LOCAL_CHAIN_ID,),
            ).fetchone()
        if row is not None and int(row[0]) >= head and int(row[1]) >= head - 3:
            return
        time.sleep(0.5)
    raise EpochError(f"the indexer did not reach block {head} in {timeout:.0f} s: is make run up?")


def settle(env: dict[str, str]) -> None:
    for args in (["run", "--wait", "120"], ["status"]):
        result = subprocess.run(
            [sys.executable, "-m", "api.settlement", *args], cwd=PROJECT_ROOT, env=env, check=False
        )
        if result.returncode not in (0,):
            raise EpochError(
                f"python -m api.settlement {' '.join(args)} exited {result.returncode}"
            )


def main() -> int:
    from api.core.settings import Settings
    from chain.contracts import ContractsError

    state_file = run_dir(os.environ) / "stack.json"
    try:
        stack = json.loads(state_file.read_text())
    except FileNotFoundError:
        print(
            f"no running stack ({state_file} is missing): start `make run` first", file=sys.stderr
        )
        return 1
    rpc_url, database_url, redis_url = stack["rpc_url"], stack["database_url"], stack["redis_url"]
    try:
        chain_id = int(rpc(rpc_url, "eth_chainId"), 16)
        if chain_id != LOCAL_CHAIN_ID:
            raise EpochError(
                f"make epoch moves the clock of the local chain only, not chain {chain_id}"
            )
        # the running stack's API port and public URL (the root's artefact links there),
        # whatever this terminal's environment says
        os.environ["API_PORT"] = str(stack.get("api_port") or os.environ.get("API_PORT") or "")
        if stack.get("public_base_url"):
            os.environ["BUZZER_PUBLIC_BASE_URL"] = stack["public_base_url"]
        if stack.get("deployments_dir"):  # where make run deployed, e.g. BUZZER_DEPLOYMENTS_DIR
            os.environ["BUZZER_DEPLOYMENTS_DIR"] = stack["deployments_dir"]
        env = services_env(
            rpc_url,
            database_url,
            redis_url,
            chain_id,
            secret_file=run_dir(os.environ) / "session-secret",
        )
        hold = Settings(**{"ivt_hold_seconds": env["BUZZER_IVT_HOLD_SECONDS"]}
                        if env.get("BUZZER_IVT_HOLD_SECONDS") else {}).ivt_hold_seconds  # fmt: skip
        epoch = call(rpc_url, "CampaignRegistry", "current_epoch")
        end = call(rpc_url, "CampaignRegistry", "epoch_end", epoch)
        print(f"epoch {epoch} ends at {end}; moving the chain past it and the IVT hold ({hold} s)")
        here = run_dir(os.environ)
        move_to(rpc_url, end + hold + MARGIN)
        follow_chain_clock(rpc_url, here)  # new traffic lands in the next epoch
        wait_indexed(database_url, rpc_url)
        with mining(rpc_url):
            settle(env)  # freezes the epoch, spends from escrow, posts the root
        challenge = call(rpc_url, "PublisherPayout", "challenge_period")
        print(f"moving the chain past the challenge period ({challenge} s)")
        move_to(rpc_url, chain_time(rpc_url) + challenge + MARGIN)
        follow_chain_clock(rpc_url, here)
        wait_indexed(database_url, rpc_url)
        with mining(rpc_url):
            settle(env)  # records the root current: claimable
    except (EpochError, StackError, ContractsError, OSError) as exc:
        print(f"make epoch: {exc}", file=sys.stderr)
        return 1
    print(outcome(database_url, rpc_url, epoch))
    return 0


def outcome(database_url: str, rpc_url: str, epoch: int) -> str:
    """The last line: what the epoch's settlement paid, in a newcomer's words."""
    import psycopg

    from migrations import libpq_url

    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(
            "SELECT state, events, root_id FROM settlement_epochs WHERE chain_id = %s"
            " AND epoch = %s",
            (LOCAL_CHAIN_ID, epoch),
        ).fetchone()
    if row is None or not row[1]:
        return (
            f"epoch {epoch} had no billable traffic, so nothing was paid: open the demo page"
            " (its ads are tracked), then run make epoch again"
        )
    state, events, root_id = row
    current = call(rpc_url, "PublisherPayout", "current_root_id")
    if root_id is not None and current >= root_id:
        return (
            f"epoch {epoch} settled: {events} billable events, paid in root {root_id}, which is"
            " current on-chain: the publisher claims on /publisher/earnings"
        )
    return f"epoch {epoch} is {state} and its root is not claimable yet: run make epoch again"


if __name__ == "__main__":
    sys.exit(main())
