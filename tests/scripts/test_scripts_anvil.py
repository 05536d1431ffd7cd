"""The ape scripts end to end against a real anvil: `ape run deploy`, `register_publisher`,
`create_campaign` and `claim` run as subprocesses, a settlement is done with web3.py in
between, and every result is read back from the chain. Also the stack runner.

Plain pytest (`pytest tests/scripts`); each test writes deployments into a temporary
directory through `BUZZER_DEPLOYMENTS_DIR`, never into the repository.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract

from api.settlement.merkle import Leaf, PayoutTree
from chain.contracts import load_abi, load_deployment
from scripts._stack import anvil, free_port, port_is_free

pytestmark = pytest.mark.anvil

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
APE = BIN_DIR / "ape"
CHAIN_ID = 1337
ZERO = "0x0000000000000000000000000000000000000000"
USDC = 10**6
BUDGET = 100 * USDC
BID = 2 * USDC
SPEND = 40 * USDC
FEE_BPS, WITHDRAW_DELAY, CHALLENGE_PERIOD = 1_500, 172_800, 21_600
ADMIN, SETTLER, ORACLE, GUARDIAN, TREASURY, ADVERTISER, _, PUBLISHER, OTHER, STRANGER = range(10)


def base_env(deployments: Path, ape_data: Path) -> dict[str, str]:
    """The scripts' environment: our deployments dir, and a private ape data folder, since
    ape caches contract types per address for custom networks and anvil reuses addresses."""
    path = os.pathsep.join([str(BIN_DIR), str(PROJECT_ROOT / "node_modules" / ".bin")])
    return {
        **os.environ,
        "PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}",
        "BUZZER_DEPLOYMENTS_DIR": str(deployments),
        "APE_DATA_FOLDER": str(ape_data),
    }


class Chain:
    """One anvil, web3 on it, and `ape run` against it."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env
        self.w3 = Web3(Web3.HTTPProvider(url))
        self.accounts = self.w3.eth.accounts

    def ape_run(self, script: str, *args: str, env: dict[str, str] | None = None) -> Run:
        command = [str(APE), "run", script, "--network", self.url, *args]
        result = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Run(command, result.returncode, result.stdout + result.stderr)

    def contract(self, name: str, deployments: Path | None = None) -> Contract:
        directory = Path(self.env["BUZZER_DEPLOYMENTS_DIR"]) if deployments is None else deployments
        address = load_deployment(CHAIN_ID, directory).address(name)
        return self.w3.eth.contract(address=address, abi=load_abi(name))

    def nonce(self, index: int) -> int:
        return self.w3.eth.get_transaction_count(self.accounts[index])


class Run:
    """What one `ape run` did."""

    def __init__(self, command: list[str], returncode: int, output: str) -> None:
        self.command, self.returncode, self.output = command, returncode, output

    def ok(self) -> Run:
        assert self.returncode == 0, f"{' '.join(self.command[1:])} failed:\n{self.output}"
        return self

    def error_line(self) -> str:
        """The one `Error: ...` line a failure prints; no traceback around it."""
        assert self.returncode != 0, self.output
        assert "Traceback" not in self.output, self.output
        errors = [line for line in self.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, self.output
        return errors[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    root = tmp_path_factory.mktemp("chain")
    env = base_env(root / "deployments", root / "ape")
    with anvil(free_port(), log_path=root / "anvil.log") as node:
        yield Chain(node.url, env)


@pytest.fixture(scope="module")
def deployed(chain: Chain) -> Run:
    return chain.ape_run("deploy").ok()


@pytest.fixture(scope="module")
def registered(chain: Chain, deployed: Run) -> Run:
    return chain.ape_run("register_publisher", "--pub-id", "pub-e2e", "--account", "TEST::7").ok()


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A campaign metadata file and the hash the registry must store for it."""
    content = {"creative": {"title": "Buzz", "url": "https://example.org"}, "geo": ["DE", "FR"]}
    path = tmp_path_factory.mktemp("metadata") / "campaign.json"
    path.write_text(json.dumps(content, indent=4))
    return path, keccak(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())


@pytest.fixture(scope="module")
def campaign_id(chain: Chain, deployed: Run, metadata: tuple[Path, bytes]) -> int:
    run = chain.ape_run(
        "create_campaign",
        "--account", "TEST::5",
        "--bid-model", "cpc",
        "--bid", str(BID),
        "--budget", "100_000_000",
        "--metadata", str(metadata[0]),
        "--mint",
    ).ok()  # fmt: skip
    match = re.search(r"campaign id (\d+)", run.output)
    assert match, run.output
    return int(match.group(1))


def test_deploy_writes_every_address_and_role(chain: Chain, deployed: Run) -> None:
    directory = Path(chain.env["BUZZER_DEPLOYMENTS_DIR"])
    assert sorted(p.name for p in directory.iterdir()) == ["1337.json"]  # no temp file left
    raw = json.loads((directory / "1337.json").read_text())
    assert raw["chain_id"] == CHAIN_ID
    names = {"PublisherRegistry", "CampaignRegistry", "PaymentEscrow", "PublisherPayout"}
    assert set(raw["contracts"]) == names | {"TestUSDC"}
    accounts = chain.accounts
    assert raw["roles"] == {
        "admin": accounts[ADMIN],
        "settler": accounts[SETTLER],
        "oracle": accounts[ORACLE],
        "guardian": accounts[GUARDIAN],
        "treasury": accounts[TREASURY],
    }
    registry_address = raw["contracts"]["PublisherRegistry"]
    start = raw["start_block"]
    assert chain.w3.eth.get_code(registry_address, block_identifier=start)
    assert not chain.w3.eth.get_code(registry_address, block_identifier=start - 1)
    for address in raw["contracts"].values():
        assert chain.w3.eth.get_code(address)
    assert re.search(r"deploy PaymentEscrow: tx 0x[0-9a-f]{64} gas [\d,]+", deployed.output)


def test_deploy_wires_roles_tokens_and_parameters(chain: Chain, deployed: Run) -> None:
    publishers = chain.contract("PublisherRegistry")
    escrow = chain.contract("PaymentEscrow")
    payout = chain.contract("PublisherPayout")
    campaigns = chain.contract("CampaignRegistry")
    usdc = chain.contract("TestUSDC")
    accounts = chain.accounts

    def has(contract: Contract, role: str, member: str) -> bool:
        role_id = getattr(contract.functions, role)().call()
        return bool(contract.functions.hasRole(role_id, member).call())

    assert has(publishers, "ORACLE_ROLE", accounts[ORACLE])
    for contract in (publishers, campaigns, escrow, payout):
        assert has(contract, "GUARDIAN_ROLE", accounts[GUARDIAN])
        assert has(contract, "DEFAULT_ADMIN_ROLE", accounts[ADMIN])
        assert not has(contract, "GUARDIAN_ROLE", accounts[STRANGER])
    for contract in (escrow, payout):
        assert has(contract, "SETTLER_ROLE", accounts[SETTLER])
    assert has(payout, "FUNDER_ROLE", escrow.address)
    assert escrow.functions.allowed_tokens(ZERO).call()
    assert escrow.functions.allowed_tokens(usdc.address).call()
    assert escrow.functions.fee_bps().call() == FEE_BPS
    assert escrow.functions.withdraw_delay().call() == WITHDRAW_DELAY
    assert escrow.functions.treasury().call() == accounts[TREASURY]
    assert payout.functions.challenge_period().call() == CHALLENGE_PERIOD
    assert usdc.functions.decimals().call() == 6


def test_register_publisher(chain: Chain, registered: Run) -> None:
    registry = chain.contract("PublisherRegistry")
    publisher = chain.accounts[PUBLISHER]
    record = registry.functions.get_publisher(publisher).call()
    assert registry.functions.is_registered(publisher).call()
    assert record[0] == "pub-e2e"
    assert record[1] == publisher  # payment wallet defaults to the account
    assert re.search(r"tx 0x[0-9a-f]{64} gas [\d,]+", registered.output)


def test_register_twice_is_one_clear_line_and_no_transaction(chain: Chain, registered: Run) -> None:
    nonces = chain.nonce(PUBLISHER), chain.nonce(OTHER)
    again = chain.ape_run("register_publisher", "--pub-id", "other", "--account", "TEST::7")
    assert "already registered" in again.error_line()
    assert again.returncode == 1
    taken = chain.ape_run("register_publisher", "--pub-id", "pub-e2e", "--account", "TEST::8")
    assert "pub_id 'pub-e2e' is taken" in taken.error_line()
    assert (chain.nonce(PUBLISHER), chain.nonce(OTHER)) == nonces


def test_create_campaign_funds_escrow_with_the_exact_budget(
    chain: Chain, campaign_id: int, metadata: tuple[Path, bytes]
) -> None:
    campaigns = chain.contract("CampaignRegistry")
    escrow = chain.contract("PaymentEscrow")
    usdc = chain.contract("TestUSDC")
    advertiser, token, bid_model, bid, metadata_hash, status, _ = campaigns.functions.get_campaign(
        campaign_id
    ).call()
    assert (advertiser, token, bid_model, bid) == (chain.accounts[ADVERTISER], usdc.address, 1, BID)
    assert metadata_hash == metadata[1]
    assert status == 1
    assert escrow.functions.get_balance(campaign_id, usdc.address).call() == BUDGET
    assert usdc.functions.balanceOf(escrow.address).call() == BUDGET
    assert usdc.functions.balanceOf(chain.accounts[ADVERTISER]).call() == 0


def test_create_campaign_rejects_a_decimal_budget_before_any_transaction(
    chain: Chain, deployed: Run
) -> None:
    nonces = chain.nonce(ADVERTISER), chain.nonce(ADMIN)
    run = chain.ape_run("create_campaign", "--account", "TEST::5", "--bid", "2", "--budget", "1.5")
    line = run.error_line()
    assert run.returncode == 2
    assert "--budget" in line and "'1.5' is not a whole number of atomic units" in line
    assert (chain.nonce(ADVERTISER), chain.nonce(ADMIN)) == nonces


def test_settle_then_claim_pays_exactly_the_leaf_once(
    chain: Chain, registered: Run, campaign_id: int, tmp_path: Path
) -> None:
    w3, accounts = chain.w3, chain.accounts
    escrow = chain.contract("PaymentEscrow")
    payout = chain.contract("PublisherPayout")
    usdc = chain.contract("TestUSDC")
    settler = {"from": accounts[SETTLER]}
    receipt = w3.eth.wait_for_transaction_receipt(
        escrow.functions.spend_batch(1, [campaign_id], [SPEND]).transact(settler)
    )
    assert receipt["status"] == 1
    share = SPEND * (10_000 - FEE_BPS) // 10_000
    publisher, other = accounts[PUBLISHER], accounts[OTHER]
    tree = PayoutTree(
        CHAIN_ID,
        payout.address,
        [Leaf(publisher, usdc.address, share - 1_000), Leaf(other, usdc.address, 1_000)],
    )
    totals = tree.totals()
    post = payout.functions.post_root(1, tree.root, list(totals), list(totals.values()), "file:a")
    assert w3.eth.wait_for_transaction_receipt(post.transact(settler))["status"] == 1
    artefact = tmp_path / "epoch-1.json"
    artefact.write_text(json.dumps(tree.to_artefact(1)))
    claim = ("claim", "--artefact", str(artefact), "--account", "TEST::7")
    balance = usdc.functions.balanceOf(publisher).call

    early = chain.ape_run(*claim)
    assert "root not claimable yet" in early.error_line()
    assert balance() == 0

    w3.provider.make_request("evm_increaseTime", [CHALLENGE_PERIOD + 1])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    before = balance()
    paid = chain.ape_run(*claim).ok()
    assert balance() - before == share - 1_000
    assert f"paid {share - 1_000} of token {usdc.address} to {publisher}" in paid.output
    assert re.search(r"claim epoch 1 token 0x[0-9a-fA-F]{40}: tx 0x[0-9a-f]{64} gas", paid.output)

    nonce = chain.nonce(PUBLISHER)
    again = chain.ape_run(*claim)
    assert "nothing to claim" in again.error_line()
    assert again.returncode == 1
    assert balance() == share - 1_000
    assert chain.nonce(PUBLISHER) == nonce

    # anyone may claim for anyone: the stranger pays the gas, the other publisher the money
    chain.ape_run(*claim[:3], "--account", "TEST::9", "--for", other).ok()
    assert usdc.functions.balanceOf(other).call() == 1_000
    assert usdc.functions.balanceOf(payout.address).call() == 0


def test_failed_deploy_leaves_the_previous_deployments_file_untouched(
    chain: Chain, deployed: Run, tmp_path: Path
) -> None:
    directory = tmp_path / "deployments"
    directory.mkdir()
    previous = (Path(chain.env["BUZZER_DEPLOYMENTS_DIR"]) / "1337.json").read_bytes()
    (directory / "1337.json").write_bytes(previous)
    env = base_env(directory, Path(chain.env["APE_DATA_FOLDER"]))
    # the escrow refuses a fee above 50 %: three contracts are deployed when it fails
    run = chain.ape_run("deploy", "--fee-bps", "5001", env=env)
    assert "escrow: fee too high" in run.error_line()
    assert "deploy PublisherPayout: tx" in run.output
    assert (directory / "1337.json").read_bytes() == previous
    assert sorted(p.name for p in directory.iterdir()) == ["1337.json"]


def _read_lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str], needle: str, timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        if needle in seen[-1]:
            return seen
    raise AssertionError(f"{needle!r} not seen within {timeout} s:\n{''.join(seen)}")


def _stack(env: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "scripts/_stack.py"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_stack_starts_anvil_deploys_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **base_env(tmp_path / "deployments", tmp_path / "ape"),
        "ANVIL_PORT": str(port),
        "ANVIL_LOG": str(tmp_path / "anvil.log"),
    }
    env.pop("RPC_URL", None)
    process = _stack(env)
    try:
        output = "".join(_wait_for(_read_lines(process), "Ctrl-C to stop", timeout=60))
        deployment = load_deployment(CHAIN_ID, tmp_path / "deployments")
        w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
        for name, address in deployment.contracts.items():
            assert w3.eth.get_code(address), name
            assert address in output
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert port_is_free(port)  # anvil was stopped with it


def test_stack_refuses_a_taken_port(chain: Chain, tmp_path: Path) -> None:
    port = chain.url.rsplit(":", 1)[1]
    env = {**base_env(tmp_path, tmp_path / "ape"), "ANVIL_PORT": port}
    env.pop("RPC_URL", None)
    result = subprocess.run(
        [sys.executable, "scripts/_stack.py"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert f"port {port} is taken" in result.stderr
    assert "Traceback" not in result.stderr


def test_stack_with_rpc_url_keeps_a_live_deployment(chain: Chain, deployed: Run) -> None:
    before = (Path(chain.env["BUZZER_DEPLOYMENTS_DIR"]) / "1337.json").read_bytes()
    block = chain.w3.eth.block_number
    process = _stack({**chain.env, "RPC_URL": chain.url})
    try:
        output = "".join(_wait_for(_read_lines(process), "Ctrl-C to stop", timeout=30))
        assert "already has a live deployment: not deploying" in output
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert chain.w3.eth.block_number == block  # nothing deployed
    assert (Path(chain.env["BUZZER_DEPLOYMENTS_DIR"]) / "1337.json").read_bytes() == before
