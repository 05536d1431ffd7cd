"""`make run` as a newcomer uses it: the demo slot's ads are served and tracked, `make epoch`
settles that traffic into a root the publisher can claim on-chain and the running stack's
clock follows the chain into the next epoch; the data survives a restart (the demo
publisher's page still fills the same slot, nothing redeployed, the demo not loaded twice), a
SIGINT sent to make's own PID stops the whole stack in seconds, and a taken port is named by
its variable before anything starts."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from eth_account import Account
from web3 import Web3

from chain.contracts import load_abi, load_deployment
from migrations import libpq_url
from scripts._demo import PUBLISHER_KEY
from scripts._stack import free_port, port_is_free
from tests.scripts.test_scripts_anvil import (
    CHAIN_ID,
    PROJECT_ROOT,
    _read_lines,
    _wait_for,
    base_env,
)

pytestmark = pytest.mark.anvil


def _env(tmp_path: Path, anvil_port: int, api_port: int) -> dict[str, str]:
    env = {
        **base_env(tmp_path / "deployments", tmp_path / "ape"),
        "ANVIL_PORT": str(anvil_port),
        "API_PORT": str(api_port),
        "BUZZER_RUN_DIR": str(tmp_path / "run"),
    }
    for name in ("RPC_URL", "DATABASE_URL", "REDIS_URL", "BUZZER_PUBLIC_BASE_URL"):
        env.pop(name, None)
    return env


def _start(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output = "".join(_wait_for(_read_lines(process), "Ctrl-C to stop", timeout=120))
    except BaseException:
        process.kill()
        raise
    return process, output


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> float:
    started = time.monotonic()
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return time.monotonic() - started


BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0 Safari/537.36"
)
CPM_CAMPAIGN, CPM_BID = 1, 3_000_000  # the demo's first campaign: 3 USDC a thousand impressions


def _cpm_impressions(api_url: str, slot: str, visitors: int) -> int:
    """A page view per visitor on the demo slot, each showing the CPM campaign's ad and sending
    its impression beacon; the number of beacons accepted."""
    sent = 0
    with httpx.Client(base_url=api_url, timeout=10) as api:
        for n in range(visitors):
            headers = {"User-Agent": BROWSER, "Accept-Language": f"en-{n}"}
            query = {"pub_id": "demo-news", "slot_id": slot, "format": "banner", "n": "5"}
            # no waiting: "up" means the ad servers already serve the demo's campaigns
            reply = api.get("/x402/ad", params=query, headers=headers)
            assert reply.status_code == 200, reply.text
            cpm = [ad for ad in reply.json()["ads"] if ad["campaign_id"] == CPM_CAMPAIGN]
            assert cpm, reply.json()
            beacon = api.post(cpm[0]["impression_url"], headers=headers)
            assert beacon.status_code < 300, beacon.text
            sent += 1
    return sent


def _recorded(
    database_url: str, since: float = 0.0, timeout: float = 30.0
) -> list[tuple[Any, ...]]:
    """The verified impressions the writer stored that the API received at or after `since`
    (unix time on the API's clock), once there are any."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(libpq_url(database_url)) as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM occurred_at), bid FROM ad_events WHERE kind ="
                " 'impression' AND verified AND occurred_at >= to_timestamp(%s)",
                (since,),
            ).fetchall()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _settle_with_make_epoch(env: dict[str, str], anvil_port: int, api_url: str, slot: str) -> None:
    """Two impressions, `make epoch`, and the publisher's share is claimable on-chain to the
    atomic unit; the next impression lands in the next epoch."""
    run = Path(env["BUZZER_RUN_DIR"])
    database_url = json.loads((run / "stack.json").read_text())["database_url"]
    assert _cpm_impressions(api_url, slot, 2) == 2
    deadline = time.monotonic() + 30
    while len(rows := _recorded(database_url)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(rows) == 2, rows

    started = time.monotonic()
    # a second terminal: only the run dir in common with make run's environment
    terminal = {k: v for k, v in env.items() if k not in ("BUZZER_DEPLOYMENTS_DIR", "API_PORT")}
    epoch = subprocess.run(
        [sys.executable, "scripts/_epoch.py"], cwd=PROJECT_ROOT, env=terminal,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = epoch.stdout + epoch.stderr
    assert epoch.returncode == 0, output
    print(f"make epoch took {time.monotonic() - started:.1f} s")
    assert "epoch 1 settled: 2 billable events, paid in root 1, which is current" in output, output

    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{anvil_port}"))
    deployment = load_deployment(CHAIN_ID, Path(env["BUZZER_DEPLOYMENTS_DIR"]))
    payout = w3.eth.contract(
        address=Web3.to_checksum_address(deployment.address("PublisherPayout")),
        abi=load_abi("PublisherPayout"),
    )
    assert payout.functions.current_root_id().call() == 1
    with psycopg.connect(libpq_url(database_url)) as conn:
        leaves = conn.execute(
            "SELECT account, token, cumulative, proof FROM payout_proofs WHERE root_id = 1"
        ).fetchall()
    publisher = Account.from_key(PUBLISHER_KEY).address.lower()
    assert [leaf[0] for leaf in leaves] == [publisher]  # the demo's only publisher
    account, token, cumulative, proof = leaves[0]
    charged = 2 * CPM_BID // 1000
    assert int(cumulative) == charged * 85 // 100  # 5,100 of 6,000 atomic units
    claimable = payout.functions.claimable(
        Web3.to_checksum_address(account), Web3.to_checksum_address(token), int(cumulative),
        [bytes.fromhex(node.removeprefix("0x")) for node in proof],
    ).call()  # fmt: skip
    assert claimable == int(cumulative)

    # the stack's clock followed the chain: the next impression belongs to the next epoch
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(deployment.address("CampaignRegistry")),
        abi=load_abi("CampaignRegistry"),
    )
    settled = registry.functions.current_epoch().call() - 1
    next_starts = registry.functions.epoch_end(settled).call()
    time.sleep(1.5)  # the offset file is read again once a second
    assert _cpm_impressions(api_url, slot, 1) == 1
    later = _recorded(database_url, since=next_starts)
    assert len(later) == 1, f"the impression after make epoch is not past {next_starts}"


def test_make_epoch_pays_a_claimable_root_and_a_restart_keeps_the_data(tmp_path: Path) -> None:
    anvil_port, api_port = free_port(), free_port()
    env = _env(tmp_path, anvil_port, api_port)
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t{sys.executable} scripts/_stack.py\n")
    make, first = _start(["make", "--no-print-directory", "-f", str(makefile), "run"], env)
    slot = re.search(r"/demo\?slot=(slot_[0-9a-f]+)", first)
    assert slot is not None, first
    assert "deploying" in first
    deployment = load_deployment(CHAIN_ID, tmp_path / "deployments")
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{anvil_port}"))
    for name, address in deployment.contracts.items():  # deployed, and shown
        assert w3.eth.get_code(Web3.to_checksum_address(address)), name
        assert address in first
    page = f"http://127.0.0.1:{api_port}/demo?slot={slot.group(1)}"
    with urllib.request.urlopen(page, timeout=10) as reply:
        assert reply.status == 200
    _settle_with_make_epoch(env, anvil_port, f"http://127.0.0.1:{api_port}", slot.group(1))
    # SIGINT to make alone (not its process group): the stack below it stops, promptly
    took = _stop(make)
    assert took < 20, f"stopping took {took:.1f} s"
    assert port_is_free(anvil_port) and port_is_free(api_port)
    assert (tmp_path / "run" / "chain" / "anvil-state.json").exists()

    again, second = _start([sys.executable, "scripts/_stack.py"], env)
    try:
        assert "resuming the saved chain" in second
        assert "already has a live deployment: not deploying" in second
        assert f"/demo?slot={slot.group(1)}" in second  # the same demo, not a second one
        with urllib.request.urlopen(page, timeout=10) as reply:
            assert reply.status == 200
    finally:
        took = _stop(again)
    assert took < 20, f"stopping took {took:.1f} s"


def test_a_taken_api_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    anvil_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api_port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "scripts/_stack.py"],
            cwd=PROJECT_ROOT,
            env=_env(tmp_path, anvil_port, api_port),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {api_port} (API_PORT) is taken" in result.stderr
    assert "set API_PORT to another port" in result.stderr
    assert "Traceback" not in result.stderr
    assert port_is_free(anvil_port)  # anvil was never started
    assert not (tmp_path / "run" / "chain").exists()
