"""The ape scripts end to end against a real anvil: `ape run deploy`, `register_publisher`,
`create_campaign` and `claim` run as subprocesses, a settlement is done with web3.py in
between (the chain's clock moved past the epoch and the challenge period), and every result
is read back from the chain. Also the stack runner, and the deploy settings check.

Plain pytest (`pytest tests/scripts`); each test writes deployments into a temporary
directory through `BUZZER_DEPLOYMENTS_DIR`, never into the repository.
"""

from __future__ import annotations

import functools
import http.server
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
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract

from api.settlement.merkle import Leaf, PayoutTree
from chain.contracts import load_abi, load_deployment
from scripts._common import ScriptError
from scripts._deploy import DeployConfig, validate_config
from scripts._stack import anvil, free_port

pytestmark = pytest.mark.anvil

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
APE = BIN_DIR / "ape"
CHAIN_ID = 1337
ZERO = "0x0000000000000000000000000000000000000000"
USDC = 10**6
BUDGET = 100 * USDC
MAX_PER_EPOCH = 50 * USDC
BID = 2 * USDC
SPEND = 60 * USDC  # above the campaign's max per epoch
DAY = 86_400
FEE_BPS, CHALLENGE_PERIOD = 1_500, 21_600
EPOCH_LENGTH, SETTLEMENT_GRACE, WITHDRAW_DELAY = DAY, 2 * DAY, 3 * DAY
ADMIN, SETTLER, ORACLE, GUARDIAN, TREASURY, ADVERTISER, WALLET, PUBLISHER, OTHER, STRANGER = range(
    10
)
BASE_CHAIN_ID = 8453


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
        address = Web3.to_checksum_address(load_deployment(CHAIN_ID, directory).address(name))
        return self.w3.eth.contract(address=address, abi=load_abi(name))

    def nonce(self, index: int) -> int:
        return self.w3.eth.get_transaction_count(self.accounts[index])

    def timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_to(self, timestamp: int) -> None:
        """Mine one block at `timestamp` (the chain's clock only moves forward)."""
        self.w3.provider.make_request("evm_mine", [timestamp])  # type: ignore[arg-type]

    def transact(self, contract: Contract, method: str, *args: Any, sender: int) -> None:
        call = getattr(contract.functions, method)(*args)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            call.transact({"from": self.accounts[sender]})
        )
        assert receipt["status"] == 1, method


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
        "--max-per-epoch", str(MAX_PER_EPOCH),
        "--metadata", str(metadata[0]),
        "--mint",
    ).ok()  # fmt: skip
    match = re.search(r"campaign id (\d+)", run.output)
    assert match, run.output
    return int(match.group(1))


def _start_of_day(timestamp: int) -> int:
    return timestamp - timestamp % DAY


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
        "escrow_settler": accounts[SETTLER],
        "payout_settler": accounts[SETTLER],
        "oracle": accounts[ORACLE],
        "guardian": accounts[GUARDIAN],
        "treasury": accounts[TREASURY],
    }
    for role in raw["roles"]:
        assert re.search(rf"role: {role}\s+│?\s*0x[0-9a-fA-F]{{40}}", deployed.output), role
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
        assert contract.functions.admin().call() == accounts[ADMIN]
    assert has(payout, "FUNDER_ROLE", escrow.address)
    assert not has(payout, "FUNDER_ROLE", accounts[SETTLER])
    # every token the escrow takes, the payout can pay out
    assert payout.functions.registered_tokens(0).call() == ZERO
    assert payout.functions.registered_tokens(1).call() == usdc.address
    for token in (ZERO, usdc.address):
        assert payout.functions.is_registered_token(token).call()
        assert escrow.functions.allowed_tokens(token).call()
    assert escrow.functions.fee_bps().call() == FEE_BPS
    assert escrow.functions.settlement_grace().call() == SETTLEMENT_GRACE
    assert escrow.functions.withdraw_delay().call() == WITHDRAW_DELAY
    assert escrow.functions.treasury().call() == accounts[TREASURY]
    assert payout.functions.challenge_period().call() == CHALLENGE_PERIOD
    # epoch 1 began at the start of the deploy's UTC day
    start = load_deployment(CHAIN_ID, Path(chain.env["BUZZER_DEPLOYMENTS_DIR"])).start_block
    deployed_at = int(chain.w3.eth.get_block(start)["timestamp"])
    assert campaigns.functions.epoch_length().call() == EPOCH_LENGTH
    assert campaigns.functions.genesis().call() == _start_of_day(deployed_at)
    assert escrow.functions.genesis().call() == _start_of_day(deployed_at)
    assert usdc.functions.decimals().call() == 6


def test_deploy_with_two_settler_keys_gives_each_only_its_contract(
    chain: Chain, tmp_path: Path
) -> None:
    env = base_env(tmp_path / "deployments", Path(chain.env["APE_DATA_FOLDER"]))
    escrow_key, payout_key = chain.accounts[WALLET], chain.accounts[SETTLER]
    chain.ape_run(
        "deploy",
        "--escrow-settler", escrow_key,
        "--payout-settler", payout_key,
        "--epoch-length", "3600",
        "--settlement-grace", "3600",
        "--withdraw-delay", "7200",
        "--challenge-period", "3600",
        env=env,
    ).ok()  # fmt: skip
    raw = json.loads((tmp_path / "deployments" / "1337.json").read_text())
    assert (raw["roles"]["escrow_settler"], raw["roles"]["payout_settler"]) == (
        escrow_key,
        payout_key,
    )
    escrow = chain.contract("PaymentEscrow", tmp_path / "deployments")
    payout = chain.contract("PublisherPayout", tmp_path / "deployments")
    campaigns = chain.contract("CampaignRegistry", tmp_path / "deployments")
    settler_role = escrow.functions.SETTLER_ROLE().call()
    assert escrow.functions.hasRole(settler_role, escrow_key).call()
    assert not escrow.functions.hasRole(settler_role, payout_key).call()
    assert payout.functions.hasRole(settler_role, payout_key).call()
    assert not payout.functions.hasRole(settler_role, escrow_key).call()
    assert campaigns.functions.epoch_length().call() == 3600
    assert escrow.functions.withdraw_delay().call() == 7200
    assert payout.functions.challenge_period().call() == 3600


def test_deploy_refuses_bad_timing_before_any_transaction(
    chain: Chain, deployed: Run, tmp_path: Path
) -> None:
    env = base_env(tmp_path / "deployments", Path(chain.env["APE_DATA_FOLDER"]))
    nonce = chain.nonce(ADMIN)
    run = chain.ape_run("deploy", "--withdraw-delay", "172800", env=env)
    assert (
        "--withdraw-delay 172800 s is below the epoch length plus the settlement grace "
        "(86400 + 172800 = 259200 s)"
    ) in run.error_line()
    assert run.returncode == 1
    assert chain.nonce(ADMIN) == nonce
    assert not (tmp_path / "deployments").exists()


def _config(escrow_settler: str, payout_settler: str) -> DeployConfig:
    return DeployConfig(
        escrow_settler=escrow_settler,
        payout_settler=payout_settler,
        oracle="0x" + "22" * 20,
        guardian="0x" + "33" * 20,
        treasury="0x" + "44" * 20,
    )


NOW = 1_700_000_000
HOT, COLD = "0x" + "11" * 20, "0x" + "55" * 20


def test_one_key_for_both_settlers_is_refused_off_a_local_chain() -> None:
    with pytest.raises(ScriptError, match="must be two keys"):
        validate_config(_config(HOT, HOT), BASE_CHAIN_ID, now=NOW)
    validate_config(_config(HOT, COLD), BASE_CHAIN_ID, now=NOW)
    for local in (1337, 31337):
        validate_config(_config(HOT, HOT), local, now=NOW)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"challenge_period": 3_599}, "--challenge-period 3599 s is outside 3,600 s"),
        ({"epoch_length": 3_599}, "--epoch-length 3599 s is outside 3,600 s"),
        ({"epoch_length": 8 * DAY}, "--epoch-length 691200 s is outside"),
        ({"settlement_grace": 0, "withdraw_delay": DAY}, "--settlement-grace 0 s is below"),
        ({"withdraw_delay": 3 * DAY - 1}, "--withdraw-delay 259199 s is below"),
        ({"withdraw_delay": 31 * DAY}, "--withdraw-delay 2678400 s is above"),
        ({"genesis": NOW + 1}, "genesis 1700000001 is after the chain's time"),
    ],
)
def test_deploy_settings_the_contracts_would_refuse_are_refused_first(
    settings: dict[str, Any], message: str
) -> None:
    config = replace(_config(HOT, COLD), **settings)
    with pytest.raises(ScriptError, match=re.escape(message)):
        validate_config(config, BASE_CHAIN_ID, now=NOW)


def test_deploy_settings_at_the_floors_are_accepted() -> None:
    floors = replace(
        _config(HOT, COLD),
        epoch_length=3_600,
        settlement_grace=3_600,
        withdraw_delay=7_200,
        challenge_period=3_600,
        genesis=NOW,
    )
    validate_config(floors, BASE_CHAIN_ID, now=NOW)


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


def test_create_campaign_registers_its_max_per_epoch_from_the_current_epoch(
    chain: Chain, campaign_id: int
) -> None:
    campaigns = chain.contract("CampaignRegistry")
    epoch = campaigns.functions.current_epoch().call()
    in_force, newest, effective = campaigns.functions.max_spend_per_epoch(campaign_id).call()
    assert (in_force, newest, effective) == (MAX_PER_EPOCH, MAX_PER_EPOCH, epoch)


def test_create_campaign_caps_an_epoch_at_the_budget_by_default(
    chain: Chain, deployed: Run
) -> None:
    campaigns = chain.contract("CampaignRegistry")
    run = chain.ape_run(
        "create_campaign",
        "--account",
        "TEST::6",
        "--bid",
        "1000",
        "--budget",
        "5_000_000",
        "--mint",
    ).ok()
    match = re.search(r"campaign id (\d+)", run.output)
    assert match, run.output
    campaign_id = int(match.group(1))
    assert campaigns.functions.max_spend_per_epoch(campaign_id).call()[0] == 5_000_000
    epoch = campaigns.functions.current_epoch().call()
    end = datetime.fromtimestamp(campaigns.functions.epoch_end(epoch).call(), UTC)
    assert (
        f"max spend per epoch 5000000, in force from epoch {epoch}, "
        f"which ends at {end.isoformat(timespec='seconds')}"
    ) in run.output


def test_create_campaign_rejects_a_decimal_budget_before_any_transaction(
    chain: Chain, deployed: Run
) -> None:
    nonces = chain.nonce(ADVERTISER), chain.nonce(ADMIN)
    run = chain.ape_run("create_campaign", "--account", "TEST::5", "--bid", "2", "--budget", "1.5")
    line = run.error_line()
    assert run.returncode == 2
    assert "--budget" in line and "'1.5' is not a whole number of atomic units" in line
    assert (chain.nonce(ADVERTISER), chain.nonce(ADMIN)) == nonces


def _artefact(tree: PayoutTree, path: Path, root_id: int | None) -> Path:
    """The artefact of `tree`, naming its root id or (as an artefact may) none at all."""
    raw = tree.to_artefact(root_id or 1)
    raw.pop("epoch", None)
    raw.pop("root_id", None)
    if root_id is not None:
        raw["root_id"] = root_id
    path.write_text(json.dumps(raw))
    return path


def _post_root(chain: Chain, root_id: int, tree: PayoutTree) -> None:
    totals = tree.totals()
    payout = chain.contract("PublisherPayout")
    args = (root_id, tree.root, list(totals), list(totals.values()), f"file:{root_id}")
    chain.transact(payout, "post_root", *args, sender=SETTLER)


def test_settle_then_claim_pays_exactly_the_current_root_once(
    chain: Chain, registered: Run, campaign_id: int, tmp_path: Path
) -> None:
    campaigns = chain.contract("CampaignRegistry")
    escrow = chain.contract("PaymentEscrow")
    payout = chain.contract("PublisherPayout")
    usdc = chain.contract("TestUSDC")
    publisher, other = chain.accounts[PUBLISHER], chain.accounts[OTHER]

    # spend is moved once its epoch has ended, clipped to the max per epoch the script set
    epoch = campaigns.functions.current_epoch().call()
    chain.advance_to(campaigns.functions.epoch_end(epoch).call())
    chain.transact(escrow, "spend_batch", epoch, [campaign_id], [SPEND], sender=SETTLER)
    assert escrow.functions.get_balance(campaign_id, usdc.address).call() == BUDGET - MAX_PER_EPOCH
    share = MAX_PER_EPOCH * (10_000 - FEE_BPS) // 10_000
    assert payout.functions.total_funded(usdc.address).call() == share

    first = PayoutTree(
        CHAIN_ID,
        payout.address,
        [Leaf(publisher, usdc.address, 10 * USDC), Leaf(other, usdc.address, 1_000)],
    )
    _post_root(chain, 1, first)
    artefact_1 = _artefact(first, tmp_path / "root-1.json", root_id=1)
    claim = ("claim", "--artefact", str(artefact_1), "--account", "TEST::7")
    balance = usdc.functions.balanceOf

    early = chain.ape_run(*claim)
    assert "root not claimable yet: root 1 opens at" in early.error_line()
    assert balance(publisher).call() == 0

    chain.advance_to(chain.timestamp() + CHALLENGE_PERIOD + 1)
    paid = chain.ape_run(*claim).ok()
    assert balance(publisher).call() == 10 * USDC
    assert f"paid {10 * USDC} of token {usdc.address} to {publisher}" in paid.output
    assert re.search(r"claim root 1 token 0x[0-9a-fA-F]{40}: tx 0x[0-9a-f]{64} gas", paid.output)

    nonce = chain.nonce(PUBLISHER)
    again = chain.ape_run(*claim)
    assert "nothing to claim" in again.error_line()
    assert again.returncode == 1
    assert balance(publisher).call() == 10 * USDC
    assert chain.nonce(PUBLISHER) == nonce

    # a correction: once root 2 matures, root 1's proofs are dead, the unclaimed one too
    second = PayoutTree(
        CHAIN_ID,
        payout.address,
        [Leaf(publisher, usdc.address, 12 * USDC), Leaf(other, usdc.address, 3_000)],
    )
    _post_root(chain, 2, second)
    chain.advance_to(chain.timestamp() + CHALLENGE_PERIOD + 1)
    nonce = chain.nonce(STRANGER)
    stale = chain.ape_run(*claim[:3], "--account", "TEST::9", "--for", other)
    assert "artefact root 1" in stale.error_line()
    assert "superseded by root 2" in stale.error_line()
    assert balance(other).call() == 0
    assert chain.nonce(STRANGER) == nonce

    # an artefact without any root id or epoch: the root itself says which it is;
    # anyone may claim for anyone: the stranger pays the gas, the other publisher the money;
    # the artefact is read from the URL it is published at
    artefact_2 = _artefact(second, tmp_path / "root-2.json", root_id=None)
    with _serving(tmp_path) as base_url:
        chain.ape_run(
            "claim", "--artefact", f"{base_url}/root-2.json", "--account", "TEST::9",
            "--for", other,
        ).ok()  # fmt: skip
    assert balance(other).call() == 3_000

    # claim_to: the publisher sends its own increase to another wallet
    cold = Web3.to_checksum_address("0x" + "ab" * 20)
    moved = chain.ape_run(
        "claim", "--artefact", str(artefact_2), "--account", "TEST::7", "--to", cold
    ).ok()
    assert balance(cold).call() == 2 * USDC
    assert balance(publisher).call() == 10 * USDC
    assert f"paid {2 * USDC} of token {usdc.address} to {cold}" in moved.output
    assert payout.functions.claimed(publisher, usdc.address).call() == 12 * USDC
    assert payout.functions.total_claimed(usdc.address).call() == 12 * USDC + 3_000

    # only the account itself may redirect its earnings
    nonce = chain.nonce(STRANGER)
    refused = chain.ape_run(
        "claim", "--artefact", str(artefact_2), "--account", "TEST::9", "--for", publisher,
        "--to", cold,
    )  # fmt: skip
    assert "cannot redirect" in refused.error_line()
    assert chain.nonce(STRANGER) == nonce


@contextmanager
def _serving(directory: Path) -> Iterator[str]:
    """The files of `directory` over HTTP on a free local port; yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
    assert f"port {port} (ANVIL_PORT) is taken" in result.stderr
    assert "Traceback" not in result.stderr


def test_stack_with_rpc_url_keeps_a_live_deployment(chain: Chain, deployed: Run) -> None:
    before = (Path(chain.env["BUZZER_DEPLOYMENTS_DIR"]) / "1337.json").read_bytes()
    block = chain.w3.eth.block_number
    process = _stack(
        {
            **chain.env,
            "RPC_URL": chain.url,
            "BUZZER_RUN_DIR": str(Path(chain.env["APE_DATA_FOLDER"]).parent / "run"),
            "API_PORT": str(free_port()),
        }
    )
    try:
        output = "".join(_wait_for(_read_lines(process), "Ctrl-C to stop", timeout=30))
        assert "already has a live deployment: not deploying" in output
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    # nothing deployed: no contract created since (the scheduler's jobs may write scores)
    created = [
        tx["hash"]
        for number in range(block + 1, chain.w3.eth.block_number + 1)
        for tx in chain.w3.eth.get_block(number, full_transactions=True)["transactions"]
        if tx["to"] is None
    ]
    assert created == []
    assert (Path(chain.env["BUZZER_DEPLOYMENTS_DIR"]) / "1337.json").read_bytes() == before
