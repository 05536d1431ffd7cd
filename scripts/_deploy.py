"""Deploying Buzzer: the four contracts (and a test USDC where asked), their roles and tokens
wired as the contract tests wire them, and the deployments file written last.

    config = DeployConfig(escrow_settler=..., payout_settler=..., oracle=..., guardian=...,
                          treasury=...)
    deployment = deploy_buzzer(admin, config)

Kept out of `deploy.py` because ape runs scripts with `runpy`, which does not register the
module, and `dataclass` needs it registered. From `ape console`:
`from scripts._deploy import DeployConfig, deploy_buzzer`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from urllib.parse import urlsplit

import click
from ape import chain, project
from ape.api import AccountAPI
from ape.contracts import ContractInstance
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from rich.table import Table

from chain.contracts import Deployment, write_deployment
from scripts._common import (
    LOCAL_CHAIN_IDS,
    ZERO_ADDRESS,
    Echo,
    ScriptError,
    deploy,
    send,
)

DAY = 86_400
HOUR = 3_600
EPOCH_LENGTH = DAY
SETTLEMENT_GRACE = 2 * DAY
WITHDRAW_DELAY = 3 * DAY  # one epoch plus the settlement grace
CHALLENGE_PERIOD = 6 * HOUR
FEE_BPS = 1_500
TEST_TOKEN_ARGS = ("USD Coin", "USDC", "USD Coin", "2")  # Base USDC's name and EIP-712 domain

# the contracts' own bounds, checked here first so a bad value costs no transaction
MIN_EPOCH_LENGTH, MAX_EPOCH_LENGTH = HOUR, 7 * DAY  # CampaignRegistry
MIN_SETTLEMENT_GRACE, MAX_WITHDRAW_DELAY = HOUR, 30 * DAY  # PaymentEscrow
MIN_CHALLENGE_PERIOD, MAX_CHALLENGE_PERIOD = HOUR, 30 * DAY  # PublisherPayout
MAX_TOKENS = 16  # PublisherPayout's registered-token list

# Base's chain ids and the USDC that x402 payments and campaign budgets are paid in there
BASE_NETWORKS = {8453: "Base mainnet", 84532: "Base Sepolia"}
BASE_USDC = {
    8453: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    84532: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
}
# the mnemonic anvil, hardhat and ape's test accounts derive from: every key of it is public
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNTS = 20
DEV_NODES = ("anvil", "hardhat", "ganache")
ROLE_DUTIES = {
    "escrow_settler": "moves campaign spend in the escrow (the scheduler's hot key)",
    "payout_settler": "posts payout roots (the scheduler's second hot key)",
    "oracle": "writes domain verifications and quality scores",
    "guardian": "pauses, suspends and revokes pending roots (the watcher's key)",
    "treasury": "receives the network fee",
}


@dataclass(frozen=True)
class DeployConfig:
    """Who holds each role and how the contracts are parameterised (times in seconds).

    `genesis`, when epoch 1 begins, defaults to the start of the chain's current UTC day."""

    escrow_settler: str
    payout_settler: str
    oracle: str
    guardian: str
    treasury: str
    epoch_length: int = EPOCH_LENGTH
    genesis: int | None = None
    settlement_grace: int = SETTLEMENT_GRACE
    withdraw_delay: int = WITHDRAW_DELAY
    challenge_period: int = CHALLENGE_PERIOD
    fee_bps: int = FEE_BPS
    test_token: bool = False
    allow_tokens: tuple[str, ...] = ()
    # the multisig proposed as every contract's next admin; it takes over with accept_admin()
    propose_admin: str | None = None


@dataclass(frozen=True)
class Network:
    """The chain a deploy is connected to: its id, the RPC it is reached through and the
    node's `web3_clientVersion`."""

    chain_id: int
    uri: str
    client: str = ""

    @property
    def local(self) -> bool:
        return self.chain_id in LOCAL_CHAIN_IDS

    @property
    def dev_node(self) -> bool:
        return self.client.lower().startswith(DEV_NODES)

    def describe(self) -> str:
        """Which network this is, in words; a development node posing under a real network's
        chain id (anvil --chain-id 84532) says so. The RPC is shown by host only, since a
        provider's URL often carries its API key."""
        host = urlsplit(self.uri).hostname or self.uri
        if self.local:
            return f"the local chain {self.chain_id} at {host}"
        name = BASE_NETWORKS.get(self.chain_id, f"chain {self.chain_id}")
        if self.dev_node:
            return (
                f"{name} (chain {self.chain_id}) as a local fork: {self.client} at {host} "
                f"using {name}'s chain id, not the real network; the same checks apply"
            )
        return f"{name} (chain {self.chain_id}) through {host}"


@cache
def dev_addresses() -> dict[str, int]:
    """The first `DEV_ACCOUNTS` addresses of the public development mnemonic, by index."""
    seed = seed_from_mnemonic(DEV_MNEMONIC, passphrase="")
    return {
        Account.from_key(key_from_seed(seed, f"m/44'/60'/0'/0/{index}")).address: index
        for index in range(DEV_ACCOUNTS)
    }


def live_problems(
    deployer: str,
    roles: dict[str, str | None],
    chain_id: int,
    test_token: bool,
    allow_tokens: tuple[str, ...],
    propose_admin: str | None = None,
) -> list[str]:
    """What makes a deploy unsafe off a local chain, every problem at once (empty: none).

    Public development keys anywhere, a role left out, a role held by the deployer (whose
    admin rights stay until handed to the multisig), TestUSDC (anyone can mint it), and on
    Base a deploy that does not allow Base's USDC."""
    problems = []
    dev = dev_addresses()
    if deployer in dev:
        problems.append(
            f"the deployer {deployer} is account {dev[deployer]} of the public test mnemonic "
            f'"{DEV_MNEMONIC}": its key is published, so anyone could act as the admin of '
            "every contract; deploy from your own ape account (`ape accounts import`)"
        )
    for role, duty in ROLE_DUTIES.items():
        option = f"--{role.replace('_', '-')}"
        address = roles.get(role)
        if address is None:
            problems.append(f"{option} is missing: the address that {duty}")
        elif address == ZERO_ADDRESS:
            problems.append(f"{option} is the zero address: the address that {duty}")
        elif address in dev:
            problems.append(
                f"{option} {address} is account {dev[address]} of the public test mnemonic: "
                "its key is published"
            )
        elif address == deployer and role != "treasury":
            problems.append(
                f"{option} is the deployer {deployer}: a hot key must not also hold the admin "
                "role; give the role its own key"
            )
    if propose_admin is not None:
        if propose_admin in dev:
            problems.append(
                f"--propose-admin {propose_admin} is account {dev[propose_admin]} of the public "
                "test mnemonic: its key is published"
            )
        elif propose_admin in (ZERO_ADDRESS, deployer):
            what = "deployer" if propose_admin == deployer else "zero address"
            problems.append(
                f"--propose-admin {propose_admin} is the {what}: name the multisig that will "
                "administer the contracts"
            )
        elif propose_admin in {roles.get(role) for role in ROLE_DUTIES if role != "treasury"}:
            problems.append(
                f"--propose-admin {propose_admin} also holds a hot role: the admin must be a "
                "multisig of its own"
            )
    if test_token:
        problems.append(
            "--test-token deploys TestUSDC, which anyone can mint: budgets in it pay "
            "publishers nothing real; allow the network's USDC with --allow-token instead"
        )
    usdc = BASE_USDC.get(chain_id)
    if usdc is not None and usdc not in allow_tokens:
        problems.append(
            f"--allow-token {usdc} (USDC on {BASE_NETWORKS[chain_id]}) is missing: x402 "
            "payments and campaign budgets are paid in it"
        )
    return problems


def refusal(network: Network, problems: list[str]) -> str:
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return f"refusing to deploy to {network.describe()}:\n{lines}"


def start_of_utc_day(timestamp: int) -> int:
    return timestamp - timestamp % DAY


def validate_config(config: DeployConfig, chain_id: int, now: int) -> None:
    """Refuse, with the reason, what a contract would refuse and what must not reach a real
    network. `now` is the chain's latest block timestamp."""
    if config.escrow_settler == config.payout_settler and chain_id not in LOCAL_CHAIN_IDS:
        raise ScriptError(
            f"--escrow-settler and --payout-settler are both {config.escrow_settler}: on chain "
            f"{chain_id} they must be two keys, so one stolen key cannot both spend budgets "
            "and post the roots that pay them out"
        )
    if not MIN_EPOCH_LENGTH <= config.epoch_length <= MAX_EPOCH_LENGTH:
        raise ScriptError(
            f"--epoch-length {config.epoch_length} s is outside {MIN_EPOCH_LENGTH:,} s (an hour) "
            f"to {MAX_EPOCH_LENGTH:,} s (a week)"
        )
    if config.genesis is not None and config.genesis > now:
        raise ScriptError(f"genesis {config.genesis} is after the chain's time {now}")
    if config.settlement_grace < MIN_SETTLEMENT_GRACE:
        raise ScriptError(
            f"--settlement-grace {config.settlement_grace} s is below {MIN_SETTLEMENT_GRACE:,} s: "
            "settling an epoch needs at least an hour after it ends"
        )
    least = config.epoch_length + config.settlement_grace
    if config.withdraw_delay < least:
        raise ScriptError(
            f"--withdraw-delay {config.withdraw_delay} s is below the epoch length plus the "
            f"settlement grace ({config.epoch_length} + {config.settlement_grace} = {least} s): "
            "a withdrawal would overtake the settlement of spend already delivered"
        )
    if config.withdraw_delay > MAX_WITHDRAW_DELAY:
        raise ScriptError(
            f"--withdraw-delay {config.withdraw_delay} s is above {MAX_WITHDRAW_DELAY:,} s "
            "(30 days)"
        )
    if not MIN_CHALLENGE_PERIOD <= config.challenge_period <= MAX_CHALLENGE_PERIOD:
        raise ScriptError(
            f"--challenge-period {config.challenge_period} s is outside "
            f"{MIN_CHALLENGE_PERIOD:,} s (an hour) to {MAX_CHALLENGE_PERIOD:,} s (30 days)"
        )
    tokens = 1 + int(config.test_token) + len(set(config.allow_tokens) - {ZERO_ADDRESS})
    if tokens > MAX_TOKENS:
        raise ScriptError(f"{tokens} tokens (ETH included) exceed the payout's {MAX_TOKENS}")


def _grant(
    contract: ContractInstance, role: str, member: str, admin: AccountAPI, echo: Echo
) -> None:
    role_id = getattr(contract, role)()
    name = contract.contract_type.name
    label = f"grant {role} on {name} to {member}"
    send(label, contract, "grantRole", role_id, member, sender=admin, echo=echo)


def deploy_buzzer(admin: AccountAPI, config: DeployConfig, echo: Echo = click.echo) -> Deployment:
    """Deploy and wire everything from `admin`, then write the deployments file.

    Every setting is checked before the first transaction. The file is written once, at
    the end, so a deploy that fails half-way leaves the previous one in place."""
    now = chain.blocks.head.timestamp
    validate_config(config, chain.chain_id, now)
    if config.genesis is None:
        config = replace(config, genesis=start_of_utc_day(now))
    for token in config.allow_tokens:
        if token != ZERO_ADDRESS and not chain.provider.get_code(token):
            raise ScriptError(f"--allow-token {token} has no code on chain {chain.chain_id}")

    publishers, receipt = deploy(project.PublisherRegistry, sender=admin, echo=echo)
    start_block = receipt.block_number
    campaigns, _ = deploy(
        project.CampaignRegistry, config.epoch_length, config.genesis, sender=admin, echo=echo
    )
    payout, _ = deploy(project.PublisherPayout, config.challenge_period, sender=admin, echo=echo)
    escrow, _ = deploy(
        project.PaymentEscrow,
        campaigns.address,
        payout.address,
        config.treasury,
        config.fee_bps,
        config.settlement_grace,
        config.withdraw_delay,
        sender=admin,
        echo=echo,
    )
    contracts = {
        "PublisherRegistry": publishers.address,
        "CampaignRegistry": campaigns.address,
        "PaymentEscrow": escrow.address,
        "PublisherPayout": payout.address,
    }
    tokens = [ZERO_ADDRESS, *config.allow_tokens]
    if config.test_token:
        usdc, _ = deploy(project.TestUSDC, *TEST_TOKEN_ARGS, sender=admin, echo=echo)
        contracts["TestUSDC"] = usdc.address
        tokens.append(usdc.address)

    _grant(escrow, "SETTLER_ROLE", config.escrow_settler, admin, echo)
    _grant(payout, "SETTLER_ROLE", config.payout_settler, admin, echo)
    _grant(payout, "FUNDER_ROLE", escrow.address, admin, echo)
    for contract in (publishers, campaigns, escrow, payout):
        _grant(contract, "GUARDIAN_ROLE", config.guardian, admin, echo)
    _grant(publishers, "ORACLE_ROLE", config.oracle, admin, echo)
    # the escrow allows only what the payout can pay out
    for token in dict.fromkeys(tokens):
        name = "ETH" if token == ZERO_ADDRESS else f"token {token}"
        send(f"register {name}", payout, "register_token", token, sender=admin, echo=echo)
        send(f"allow {name}", escrow, "set_token_allowed", token, True, sender=admin, echo=echo)
    if config.propose_admin is not None:
        for contract in (publishers, campaigns, escrow, payout):
            label = f"propose {config.propose_admin} as admin of {contract.contract_type.name}"
            send(label, contract, "propose_admin", config.propose_admin, sender=admin, echo=echo)

    deployment = Deployment(
        chain_id=chain.chain_id,
        contracts=contracts,
        start_block=start_block,
        roles={
            "admin": admin.address,
            "escrow_settler": config.escrow_settler,
            "payout_settler": config.payout_settler,
            "oracle": config.oracle,
            "guardian": config.guardian,
            "treasury": config.treasury,
        },
    )
    path = write_deployment(deployment)
    echo(f"wrote {path}")
    echo(
        f"epochs of {config.epoch_length:,} s from {config.genesis}; settlement grace "
        f"{config.settlement_grace:,} s, withdraw delay {config.withdraw_delay:,} s, "
        f"challenge period {config.challenge_period:,} s"
    )
    return deployment


def deployment_table(deployment: Deployment) -> Table:
    table = Table(
        title=f"Buzzer on chain {deployment.chain_id} (from block {deployment.start_block})"
    )
    table.add_column("name")
    table.add_column("address")
    for name, address in deployment.contracts.items():
        table.add_row(name, address)
    for role, address in deployment.roles.items():
        table.add_row(f"role: {role}", address)
    return table
