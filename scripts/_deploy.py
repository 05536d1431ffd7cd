"""Deploying Buzzer: the four contracts (and a test USDC where asked), their roles and token
allow-list wired as the contract tests wire them, and the deployments file written last.

Kept out of `deploy.py` because ape runs scripts with `runpy`, which does not register the
module, and `dataclass` needs it registered. From `ape console`:
`from scripts._deploy import DeployConfig, deploy_buzzer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
from ape import chain, project
from ape.api import AccountAPI
from ape.contracts import ContractInstance
from rich.table import Table

from chain.contracts import Deployment, write_deployment
from scripts._common import (
    ZERO_ADDRESS,
    Echo,
    ScriptError,
    deploy,
    send,
)

WITHDRAW_DELAY = 2 * 86_400  # longer than a daily epoch plus its settlement
CHALLENGE_PERIOD = 6 * 3_600
FEE_BPS = 1_500
TEST_TOKEN_ARGS = ("USD Coin", "USDC", "USD Coin", "2")  # Base USDC's name and EIP-712 domain


@dataclass(frozen=True)
class DeployConfig:
    """Who holds each role and how the contracts are parameterised."""

    settler: str
    oracle: str
    guardian: str
    treasury: str
    withdraw_delay: int = WITHDRAW_DELAY
    challenge_period: int = CHALLENGE_PERIOD
    fee_bps: int = FEE_BPS
    test_token: bool = False
    allow_tokens: tuple[str, ...] = ()


def _grant(
    contract: ContractInstance, role: str, member: str, admin: AccountAPI, echo: Echo
) -> None:
    role_id = getattr(contract, role)()
    name = contract.contract_type.name
    label = f"grant {role} on {name} to {member}"
    send(label, contract, "grantRole", role_id, member, sender=admin, echo=echo)


def deploy_buzzer(admin: AccountAPI, config: DeployConfig, echo: Echo = click.echo) -> Deployment:
    """Deploy and wire everything from `admin`, then write the deployments file.

    The file is written once, at the end, so a deploy that fails half-way leaves the
    previous one in place."""
    for token in config.allow_tokens:
        if not chain.provider.get_code(token):
            raise ScriptError(f"--allow-token {token} has no code on chain {chain.chain_id}")

    publishers, receipt = deploy(project.PublisherRegistry, sender=admin, echo=echo)
    start_block = receipt.block_number
    campaigns, _ = deploy(project.CampaignRegistry, sender=admin, echo=echo)
    payout, _ = deploy(project.PublisherPayout, config.challenge_period, sender=admin, echo=echo)
    escrow, _ = deploy(
        project.PaymentEscrow,
        campaigns.address,
        payout.address,
        config.treasury,
        config.withdraw_delay,
        config.fee_bps,
        sender=admin,
        echo=echo,
    )
    contracts = {
        "PublisherRegistry": publishers.address,
        "CampaignRegistry": campaigns.address,
        "PaymentEscrow": escrow.address,
        "PublisherPayout": payout.address,
    }
    allowed = [ZERO_ADDRESS, *config.allow_tokens]
    if config.test_token:
        usdc, _ = deploy(project.TestUSDC, *TEST_TOKEN_ARGS, sender=admin, echo=echo)
        contracts["TestUSDC"] = usdc.address
        allowed.append(usdc.address)

    _grant(publishers, "ORACLE_ROLE", config.oracle, admin, echo)
    for contract in (publishers, campaigns, escrow, payout):
        _grant(contract, "GUARDIAN_ROLE", config.guardian, admin, echo)
    for contract in (escrow, payout):
        _grant(contract, "SETTLER_ROLE", config.settler, admin, echo)
    _grant(payout, "FUNDER_ROLE", escrow.address, admin, echo)
    for token in dict.fromkeys(allowed):
        label = "allow ETH" if token == ZERO_ADDRESS else f"allow token {token}"
        send(label, escrow, "set_token_allowed", token, True, sender=admin, echo=echo)

    deployment = Deployment(
        chain_id=chain.chain_id,
        contracts=contracts,
        start_block=start_block,
        roles={
            "admin": admin.address,
            "settler": config.settler,
            "oracle": config.oracle,
            "guardian": config.guardian,
            "treasury": config.treasury,
        },
    )
    path = write_deployment(deployment)
    echo(f"wrote {path}")
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
