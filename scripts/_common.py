"""What every Buzzer ape script shares: picking the account, finding this chain's deployment,
sending transactions that fail with one clear line, and printing what each one cost.

Transactions are simulated with a plain `eth_call` before they are sent, so a revert is
reported as its reason alone, before any gas is spent (ape would print a call trace first).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from ape import accounts, chain, networks, project
from ape.api import AccountAPI, ReceiptAPI
from ape.contracts import ContractContainer, ContractInstance
from ape.exceptions import ApeException, ContractLogicError
from eth_utils import is_address, keccak, to_checksum_address
from web3.exceptions import ContractLogicError as Web3ContractLogicError
from web3.types import TxParams, Wei

from chain.contracts import ContractsError, Deployment, deployment_path, load_deployment

LOCAL_CHAIN_IDS = frozenset({1337, 31337})
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
BID_MODELS = {"cpm": 0, "cpc": 1}

Echo = Callable[[str], None]

# pydantic-settings warns about a field of an ape plugin's config on every run; it is not ours
warnings.filterwarnings("ignore", message=r"Field 'import_remapping' has an incomplete definition")


class ScriptError(click.ClickException):
    """A failure the user can act on: printed as one `Error: ...` line, exit code 1."""


def is_local_chain() -> bool:
    return chain.chain_id in LOCAL_CHAIN_IDS


def select_account(account: AccountAPI | None, local_default: int = 0) -> AccountAPI:
    """The `--account` given, or test account `local_default` on a local chain."""
    if account is not None:
        return account
    if is_local_chain():
        return accounts.test_accounts[local_default]
    raise ScriptError(
        f"--account is required on chain {chain.chain_id} "
        "(an ape account alias; see `ape accounts list`)"
    )


def local_test_account(address: str) -> AccountAPI:
    """The local test account with this address (for admin actions on a local chain)."""
    for candidate in accounts.test_accounts:
        if candidate.address == to_checksum_address(address):
            return candidate
    raise ScriptError(f"{address} is not one of this chain's test accounts")


class AddressParam(click.ParamType):
    """A hex address, checksummed; with `allow_eth`, `eth` names ETH (the zero address)."""

    name = "address"

    def __init__(self, allow_eth: bool = False) -> None:
        self.allow_eth = allow_eth

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if self.allow_eth and isinstance(value, str) and value.lower() == "eth":
            return ZERO_ADDRESS
        if isinstance(value, str) and is_address(value):
            return to_checksum_address(value)
        hint = " (or `eth`)" if self.allow_eth else ""
        self.fail(f"{value!r} is not an address{hint}", param, ctx)


class AtomicAmount(click.ParamType):
    """A positive whole number of a token's smallest units (`1_500_000` is fine, `1.5` is not)."""

    name = "atomic units"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            amount = value
        elif isinstance(value, str) and re.fullmatch(r"\d+(_\d+)*", value.strip()):
            amount = int(value.strip())
        else:
            self.fail(
                f"{value!r} is not a whole number of atomic units; amounts are integers in "
                "the token's smallest unit (1.5 USDC is 1500000)",
                param,
                ctx,
            )
        if amount <= 0:
            self.fail(f"{value!r} must be greater than zero", param, ctx)
        if amount >= 2**256:
            self.fail(f"{value!r} does not fit in uint256", param, ctx)
        return amount


def current_deployment() -> Deployment:
    """The deployment of the connected chain, from the deployments directory."""
    try:
        return load_deployment(chain.chain_id)
    except ContractsError as exc:
        raise ScriptError(str(exc)) from None


def deployed(deployment: Deployment, name: str) -> ContractInstance:
    """Contract `name` of `deployment`, refusing an address with no code on this chain."""
    try:
        address = deployment.address(name)
    except ContractsError as exc:
        raise ScriptError(str(exc)) from None
    if not chain.provider.get_code(address):
        raise ScriptError(
            f"{name} has no code at {address} on chain {chain.chain_id}: "
            f"{deployment_path(chain.chain_id)} is stale, deploy again with `ape run deploy`"
        )
    container: ContractContainer = getattr(project, name)
    return container.at(address)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes a content hash is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def metadata_hash(value: Any) -> bytes:
    """keccak256 of the canonical JSON of a campaign's metadata."""
    return keccak(canonical_json(value))


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ScriptError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ScriptError(f"{what} {path} is not valid JSON: {exc}") from None


def revert_reason(error: Exception) -> str:
    """The revert reason of a failed call or transaction, without ape's or web3's prefixes."""
    if isinstance(error, ContractLogicError):
        message = error.revert_message or str(error)
    else:
        message = getattr(error, "message", None) or str(error)
    return message.removeprefix("execution reverted: ").removeprefix("execution reverted")


def simulate(sender: str, to: str | None, data: bytes, value: int = 0) -> None:
    """Run a transaction as an `eth_call` and raise its revert reason as a `ScriptError`."""
    call: TxParams = {"from": to_checksum_address(sender), "data": data, "value": Wei(value)}
    if to is not None:
        call["to"] = to_checksum_address(to)
    try:
        networks.provider.web3.eth.call(call)
    except Web3ContractLogicError as exc:
        raise ScriptError(f"would revert: {revert_reason(exc)}") from None


def echo_tx(label: str, receipt: ReceiptAPI, echo: Echo = click.echo) -> None:
    echo(f"{label}: tx {receipt.txn_hash} gas {receipt.gas_used:,}")


def send(
    label: str,
    contract: ContractInstance,
    method: str,
    *args: Any,
    sender: AccountAPI,
    value: int = 0,
    echo: Echo = click.echo,
) -> ReceiptAPI:
    """Simulate, then send `contract.method(*args)` from `sender`, and print hash and gas."""
    handler = getattr(contract, method)
    simulate(sender.address, contract.address, handler.encode_input(*args), value)
    try:
        receipt: ReceiptAPI = handler(*args, sender=sender, value=value)
    except ContractLogicError as exc:
        raise ScriptError(f"{label} reverted: {revert_reason(exc)}") from None
    except ApeException as exc:
        raise ScriptError(f"{label} failed: {exc}") from None
    echo_tx(label, receipt, echo)
    return receipt


def deploy(
    container: ContractContainer, *args: Any, sender: AccountAPI, echo: Echo = click.echo
) -> tuple[ContractInstance, ReceiptAPI]:
    """Simulate, then deploy `container(*args)` from `sender`; print hash and gas."""
    name = container.contract_type.name or "contract"
    txn = container.constructor.serialize_transaction(*args)
    simulate(sender.address, None, txn.data)
    try:
        instance = container.deploy(*args, sender=sender)
    except ContractLogicError as exc:
        raise ScriptError(f"deploying {name} reverted: {revert_reason(exc)}") from None
    except ApeException as exc:
        raise ScriptError(f"deploying {name} failed: {exc}") from None
    receipt = chain.get_receipt(instance.txn_hash)
    echo_tx(f"deploy {name}", receipt, echo)
    return instance, receipt


def event_args(receipt: ReceiptAPI, contract: ContractInstance, event: str) -> Mapping[str, Any]:
    """The arguments of the first `event` that `contract` emitted in `receipt`."""
    logs = receipt.events.filter(getattr(contract, event))
    if not logs:
        raise ScriptError(f"{receipt.txn_hash} emitted no {event}")
    return dict(logs[0].event_arguments)
