"""`ape run deploy` off a local chain: anvil started with Base Sepolia's chain id 84532 and
reached as `--network base:sepolia:node` through `BASE_SEPOLIA_RPC_URL` (the path a real
deploy takes through ape-config.yaml), with the deployer an encrypted ape account unlocked
from `APE_ACCOUNTS_<alias>_PASSPHRASE`. An unsafe deploy is refused with every reason and
no transaction; a safe one deploys after the question is answered. The rules themselves are
also checked without a chain.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from chain.contracts import load_abi
from scripts._deploy import BASE_USDC, Network, dev_addresses, live_problems
from scripts._stack import anvil, free_port

pytestmark = pytest.mark.anvil

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
APE = BIN_DIR / "ape"
SEPOLIA, MAINNET = 84532, 8453
USDC = BASE_USDC[SEPOLIA]
PASSPHRASE = "correct horse battery staple"
# anvil's account 0: published in every anvil banner
DEV_KEY_0 = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
ROLES = ("escrow_settler", "payout_settler", "oracle", "guardian", "treasury")


@dataclass
class Fork:
    w3: Web3
    env: dict[str, str]
    deployments: Path
    deployer: str
    roles: dict[str, str]

    def deploy(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(APE), "run", "deploy", "--network", "base:sepolia:node", *args]
        return subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def role_options(self) -> list[str]:
        return [f"--{role.replace('_', '-')}={address}" for role, address in self.roles.items()]

    def nonce(self, address: str) -> int:
        return self.w3.eth.get_transaction_count(Web3.to_checksum_address(address))


def _import_account(ape_data: Path, alias: str, key: bytes) -> str:
    """What `ape accounts import` leaves: an encrypted keyfile outside the repository."""
    folder = ape_data / "accounts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{alias}.json").write_text(json.dumps(Account.encrypt(key, PASSPHRASE)))
    return str(Account.from_key(key).address)


@pytest.fixture(scope="module")
def fork(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fork]:
    root = tmp_path_factory.mktemp("base-sepolia-fork")
    with anvil(free_port(), chain_id=SEPOLIA, log_path=root / "anvil.log") as node:
        w3 = Web3(Web3.HTTPProvider(node.url))
        deployer = _import_account(root / "ape", "deployer", os.urandom(32))
        _import_account(root / "ape", "devkey", DEV_KEY_0)
        w3.provider.make_request("anvil_setBalance", [deployer, hex(10**20)])  # type: ignore[arg-type]
        # Base Sepolia's USDC address holds a contract, as on the real network
        w3.provider.make_request("anvil_setCode", [USDC, "0x00"])  # type: ignore[arg-type]
        path = os.pathsep.join([str(BIN_DIR), str(PROJECT_ROOT / "node_modules" / ".bin")])
        env = {
            **os.environ,
            "PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}",
            "BASE_SEPOLIA_RPC_URL": node.url,
            "BUZZER_DEPLOYMENTS_DIR": str(root / "deployments"),
            "APE_DATA_FOLDER": str(root / "ape"),
            "APE_ACCOUNTS_deployer_PASSPHRASE": PASSPHRASE,
            "APE_ACCOUNTS_devkey_PASSPHRASE": PASSPHRASE,
        }
        roles = {role: Account.create().address for role in ROLES}
        yield Fork(w3, env, root / "deployments", deployer, roles)


def test_an_unsafe_deploy_is_refused_with_every_reason_and_no_transaction(fork: Fork) -> None:
    dev_deployer = next(iter(dev_addresses()))
    nonce = fork.nonce(dev_deployer)
    run = fork.deploy(
        "--account", "devkey",
        "--escrow-settler", fork.roles["escrow_settler"],
        "--payout-settler", dev_deployer,
        "--guardian", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "--treasury", fork.roles["treasury"],
        "--test-token",
        "--propose-admin", dev_deployer,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "Traceback" not in output
    assert (
        "Error: refusing to deploy to Base Sepolia (chain 84532) as a local fork: anvil/"
    ) in output
    assert "not the real network" in output
    for reason in (
        f"the deployer {dev_deployer} is account 0 of the public test mnemonic",
        f"--payout-settler {dev_deployer} is account 0 of the public test mnemonic",
        "--oracle is missing: the address that writes domain verifications",
        "--guardian 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 is account 1",
        "--test-token deploys TestUSDC, which anyone can mint",
        f"--propose-admin {dev_deployer} is account 0 of the public test mnemonic",
        f"--allow-token {USDC} (USDC on Base Sepolia) is missing",
    ):
        assert f"  - {reason}" in output, output
    assert fork.nonce(dev_deployer) == nonce
    assert not fork.deployments.exists()


def test_a_safe_deploy_deploys_with_usdc_the_named_roles_and_the_multisig_proposed(
    fork: Fork,
) -> None:
    multisig = Account.create().address
    options = [
        "--account", "deployer", *fork.role_options(), "--allow-token", USDC,
        "--propose-admin", multisig,
    ]  # fmt: skip
    run = fork.deploy(*options, "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"next: {multisig} calls accept_admin() on each of the four contracts" in run.stdout
    raw = json.loads((fork.deployments / f"{SEPOLIA}.json").read_text())
    assert raw["chain_id"] == SEPOLIA
    assert "TestUSDC" not in raw["contracts"]
    assert raw["roles"] == {"admin": fork.deployer, **fork.roles}
    escrow = fork.w3.eth.contract(
        address=raw["contracts"]["PaymentEscrow"], abi=load_abi("PaymentEscrow")
    )
    assert escrow.functions.allowed_tokens(USDC).call()
    assert escrow.functions.treasury().call() == fork.roles["treasury"]
    for name in ("PublisherRegistry", "CampaignRegistry", "PaymentEscrow", "PublisherPayout"):
        contract = fork.w3.eth.contract(address=raw["contracts"][name], abi=load_abi(name))
        assert contract.functions.admin().call() == fork.deployer
        assert contract.functions.pending_admin().call() == multisig
    # the multisig takes over, and the deployer keeps nothing
    fork.w3.provider.make_request("anvil_impersonateAccount", [multisig])  # type: ignore[arg-type]
    fork.w3.provider.make_request("anvil_setBalance", [multisig, hex(10**18)])  # type: ignore[arg-type]
    tx = escrow.functions.accept_admin().transact({"from": multisig})
    assert fork.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    admin_role = escrow.functions.DEFAULT_ADMIN_ROLE().call()
    assert escrow.functions.admin().call() == multisig
    assert not escrow.functions.hasRole(admin_role, fork.deployer).call()


ROLE_HOLDERS = {role: "0x" + f"{index + 1:02x}" * 20 for index, role in enumerate(ROLES)}
DEPLOYER = "0x" + "aa" * 20


def _problems(chain_id: int = SEPOLIA, **changes: str | None) -> list[str]:
    proposed = changes.pop("propose_admin", "0x" + "ee" * 20)
    roles = {**ROLE_HOLDERS, **changes}
    checksummed = {k: v if v is None else Web3.to_checksum_address(v) for k, v in roles.items()}
    tokens = (BASE_USDC[chain_id],) if chain_id in BASE_USDC else ()
    admin = Web3.to_checksum_address(proposed) if proposed else None
    deployer = Web3.to_checksum_address(DEPLOYER)
    return live_problems(deployer, checksummed, chain_id, False, tokens, admin)


def test_a_complete_plan_has_no_problem_on_either_base_network() -> None:
    assert _problems(SEPOLIA) == []
    assert _problems(MAINNET) == []
    assert _problems(10) == []  # another network: no USDC rule, the key rules still hold


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"oracle": "0x" + "00" * 20}, "--oracle is the zero address"),
        ({"escrow_settler": DEPLOYER}, "--escrow-settler is the deployer"),
        ({"guardian": DEPLOYER}, "--guardian is the deployer"),
        ({"treasury": "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199"}, "is account 19 of"),
        ({"propose_admin": ROLE_HOLDERS["oracle"]}, "also holds a hot role"),
        (
            {"propose_admin": DEPLOYER},
            "--propose-admin 0xaAaAaAaaAaAaAaaAaAAAAAAAAaaaAaAaAaaAaaAa is the deployer",
        ),
    ],
)
def test_each_unsafe_role_is_named(changes: dict[str, str], reason: str) -> None:
    problems = _problems(MAINNET, **changes)
    assert len(problems) == 1 and reason in problems[0], problems


def test_mainnet_without_its_usdc_is_refused() -> None:
    roles = {k: Web3.to_checksum_address(v) for k, v in ROLE_HOLDERS.items()}
    problems = live_problems(Web3.to_checksum_address(DEPLOYER), roles, MAINNET, False, (USDC,))
    assert problems == [
        f"--allow-token {BASE_USDC[MAINNET]} (USDC on Base mainnet) is missing: x402 payments "
        "and campaign budgets are paid in it"
    ]


def test_the_network_is_named_without_the_rpc_key() -> None:
    real = Network(MAINNET, "https://base-mainnet.g.alchemy.com/v2/SECRETKEY", "Geth/v1.101411.0")
    assert real.describe() == "Base mainnet (chain 8453) through base-mainnet.g.alchemy.com"
    fork = Network(SEPOLIA, "http://127.0.0.1:8545", "anvil/v1.7.1")
    assert fork.describe().startswith("Base Sepolia (chain 84532) as a local fork")
    assert "SECRETKEY" not in real.describe()
