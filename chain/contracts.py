"""The one place the runtime learns contract ABIs (ape's build output) and addresses
(`deployments/<chain_id>.json`, overridable per contract from the environment).

The deployments directory is `deployments/` in the repository unless `BUZZER_DEPLOYMENTS_DIR`
names another one (tests point it at a temporary directory)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUILD_MANIFEST = PROJECT_ROOT / ".build" / "__local__.json"
DEPLOYMENTS_DIR = PROJECT_ROOT / "deployments"
DEPLOYMENTS_DIR_ENV = "BUZZER_DEPLOYMENTS_DIR"

CORE_CONTRACTS = ("PublisherRegistry", "CampaignRegistry", "PaymentEscrow", "PublisherPayout")

# Circle's USDC, the token x402 pays in on Base (the `exact` scheme's default asset there)
BASE_USDC = {
    8453: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    84532: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
}

Abi = list[dict[str, Any]]


class ContractsError(Exception):
    """The build output or a deployments file is missing or malformed."""


@lru_cache(maxsize=8)
def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContractsError(
            f"no compiled contracts at {path}: run `ape compile` (or `make install`) first"
        ) from None
    except json.JSONDecodeError as exc:
        raise ContractsError(f"{path} is not valid JSON: {exc}") from None
    return manifest


def load_abi(name: str, manifest_path: Path = BUILD_MANIFEST) -> Abi:
    """The ABI of contract `name` as ape compiled it."""
    contract_types = _manifest(manifest_path).get("contractTypes", {})
    if name not in contract_types:
        known = ", ".join(sorted(contract_types)) or "none"
        raise ContractsError(f"contract {name!r} is not in {manifest_path} (compiled: {known})")
    abi: Abi = contract_types[name]["abi"]
    return abi


def env_override_name(contract: str) -> str:
    """`PaymentEscrow` -> `PAYMENT_ESCROW_ADDRESS`."""
    snake = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(contract))
    return f"{snake.upper()}_ADDRESS"


@dataclass(frozen=True)
class Deployment:
    """Addresses of one deployment of the contracts on one chain."""

    chain_id: int
    contracts: dict[str, str]
    start_block: int
    roles: dict[str, str] = field(default_factory=dict)

    def address(self, name: str) -> str:
        try:
            return self.contracts[name]
        except KeyError:
            raise ContractsError(
                f"{name} is not deployed on chain {self.chain_id}: "
                f"known are {', '.join(sorted(self.contracts))}"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "contracts": self.contracts,
            "start_block": self.start_block,
            "roles": self.roles,
        }


def payment_token_address(deployment: Deployment, configured: str = "") -> str | None:
    """The token x402 payments are made in: `configured` (`PAYMENT_TOKEN`) when set, else the
    deployment's TestUSDC on a local chain, else Circle's USDC on Base; None when unknown."""
    if configured:
        if not is_address(configured):
            raise ContractsError(f"PAYMENT_TOKEN is not an address: {configured!r}")
        return to_checksum_address(configured)
    return deployment.contracts.get("TestUSDC") or BASE_USDC.get(deployment.chain_id)


def deployments_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$BUZZER_DEPLOYMENTS_DIR` when set, else the repository's `deployments/`."""
    env = os.environ if environ is None else environ
    override = env.get(DEPLOYMENTS_DIR_ENV)
    return Path(override) if override else DEPLOYMENTS_DIR


def deployment_path(chain_id: int, directory: Path | None = None) -> Path:
    return (directory or deployments_dir()) / f"{chain_id}.json"


def load_deployment(
    chain_id: int,
    directory: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Deployment:
    """Read `deployments/<chain_id>.json`; `<CONTRACT>_ADDRESS` variables override entries."""
    env = os.environ if environ is None else environ
    path = deployment_path(chain_id, directory or deployments_dir(env))
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContractsError(
            f"no deployments file {path}: deploy with `ape run deploy` first"
        ) from None
    except json.JSONDecodeError as exc:
        raise ContractsError(f"{path} is not valid JSON: {exc}") from None
    if raw.get("chain_id") != chain_id:
        raise ContractsError(f"{path} is for chain {raw.get('chain_id')}, not {chain_id}")
    contracts = dict(raw.get("contracts", {}))
    for name in set(contracts) | set(CORE_CONTRACTS):
        override = env.get(env_override_name(name))
        if override:
            contracts[name] = override
    checked: dict[str, str] = {}
    for name, address in contracts.items():
        if not isinstance(address, str) or not is_address(address):
            raise ContractsError(f"{path}: {name} has no valid address ({address!r})")
        checked[name] = to_checksum_address(address)
    return Deployment(
        chain_id=chain_id,
        contracts=checked,
        start_block=int(raw.get("start_block", 0)),
        roles={k: to_checksum_address(v) for k, v in raw.get("roles", {}).items()},
    )


def write_deployment(deployment: Deployment, directory: Path | None = None) -> Path:
    """Write the deployments file atomically, so a reader never sees half of it.

    The JSON goes to a uniquely named temporary file in the same directory, is flushed to
    disk, then renamed over the old file; on any failure the old file stays as it was."""
    directory = directory or deployments_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = deployment_path(deployment.chain_id, directory)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(deployment.to_json(), indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
