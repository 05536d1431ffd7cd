"""`ape run deploy`: deploy and wire the Buzzer contracts, then write
`deployments/<chain_id>.json` (see `scripts/_deploy.py`).

Off a local chain (Base Sepolia, Base mainnet) it deploys from your own ape account and with
every role holder named, refuses public test keys, TestUSDC and a deploy without Base's USDC,
and asks before the first transaction (`--yes` skips the question). docs/RUNBOOK.md."""

from __future__ import annotations

import click
from ape import accounts, chain
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option
from rich.console import Console

from scripts._common import AddressParam, ScriptError, select_account
from scripts._deploy import (
    CHALLENGE_PERIOD,
    EPOCH_LENGTH,
    FEE_BPS,
    SETTLEMENT_GRACE,
    WITHDRAW_DELAY,
    DeployConfig,
    Network,
    deploy_buzzer,
    deployment_table,
    live_problems,
    refusal,
    validate_config,
)

LOCAL_ROLE_ACCOUNTS = {
    "escrow_settler": 1,
    "payout_settler": 1,
    "oracle": 2,
    "guardian": 3,
    "treasury": 4,
}


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option(
    "--escrow-settler",
    type=AddressParam(),
    help="SETTLER on the escrow: moves spend (local default: test account 1)",
)
@click.option(
    "--payout-settler",
    type=AddressParam(),
    help="SETTLER on the payout: posts roots; another key than the escrow's off a local chain "
    "(local default: test account 1)",
)
@click.option("--oracle", type=AddressParam(), help="ORACLE (local default: test account 2)")
@click.option("--guardian", type=AddressParam(), help="GUARDIAN (local default: test account 3)")
@click.option("--treasury", type=AddressParam(), help="Fee receiver (local default: account 4)")
@click.option(
    "--epoch-length",
    type=click.IntRange(min=1),
    default=EPOCH_LENGTH,
    show_default=True,
    help="Seconds in one spend epoch (an hour to a week); epoch 1 starts at the beginning of "
    "the chain's current UTC day",
)
@click.option(
    "--settlement-grace",
    type=click.IntRange(min=0),
    default=SETTLEMENT_GRACE,
    show_default=True,
    help="Seconds after an epoch ends that its settlement may take (at least an hour)",
)
@click.option(
    "--withdraw-delay",
    type=click.IntRange(min=0),
    default=WITHDRAW_DELAY,
    show_default=True,
    help="Seconds between a budget withdraw request and the withdrawal "
    "(at least epoch length + settlement grace)",
)
@click.option(
    "--challenge-period",
    type=click.IntRange(min=0),
    default=CHALLENGE_PERIOD,
    show_default=True,
    help="Seconds a posted payout root waits before it can be claimed (at least an hour)",
)
@click.option(
    "--fee-bps",
    type=click.IntRange(0, 10_000),
    default=FEE_BPS,
    show_default=True,
    help="Network fee in basis points of each spend",
)
@click.option(
    "--test-token/--no-test-token",
    default=None,
    help="Deploy TestUSDC (default: only on local chains 1337/31337)",
)
@click.option(
    "--allow-token",
    "allow_tokens",
    multiple=True,
    type=AddressParam(),
    help="An ERC-20 to register in the payout and allow in the escrow, e.g. USDC on Base "
    "(repeatable)",
)
@click.option(
    "--propose-admin",
    type=AddressParam(),
    help="The multisig to hand every contract's admin role to: proposed at the end of the "
    "deploy, it takes over when it calls accept_admin() on each contract",
)
@click.option("--yes", is_flag=True, help="Do not ask before deploying off a local chain")
def cli(
    account: AccountAPI | None,
    escrow_settler: str | None,
    payout_settler: str | None,
    oracle: str | None,
    guardian: str | None,
    treasury: str | None,
    epoch_length: int,
    settlement_grace: int,
    withdraw_delay: int,
    challenge_period: int,
    fee_bps: int,
    test_token: bool | None,
    allow_tokens: tuple[str, ...],
    propose_admin: str | None,
    yes: bool,
) -> None:
    """Deploy and wire the Buzzer contracts; write deployments/<chain_id>.json."""
    network = current_network()
    local = network.local
    roles: dict[str, str | None] = {
        "escrow_settler": escrow_settler,
        "payout_settler": payout_settler,
        "oracle": oracle,
        "guardian": guardian,
        "treasury": treasury,
    }
    test_token = local if test_token is None else test_token
    if local:
        for role, index in LOCAL_ROLE_ACCOUNTS.items():
            roles[role] = roles[role] or accounts.test_accounts[index].address
    elif account is None:
        raise ScriptError(
            f"--account is required on {network.describe()} (an ape account alias, see "
            "`ape accounts list`; its passphrase may come from APE_ACCOUNTS_<alias>_PASSPHRASE)"
        )
    else:
        problems = live_problems(
            account.address, roles, network.chain_id, test_token, allow_tokens, propose_admin
        )
        if problems:
            raise ScriptError(refusal(network, problems))
    admin = select_account(account)
    config = DeployConfig(
        escrow_settler=str(roles["escrow_settler"]),
        payout_settler=str(roles["payout_settler"]),
        oracle=str(roles["oracle"]),
        guardian=str(roles["guardian"]),
        treasury=str(roles["treasury"]),
        epoch_length=epoch_length,
        settlement_grace=settlement_grace,
        withdraw_delay=withdraw_delay,
        challenge_period=challenge_period,
        fee_bps=fee_bps,
        test_token=test_token,
        allow_tokens=allow_tokens,
        propose_admin=propose_admin,
    )
    validate_config(config, network.chain_id, chain.blocks.head.timestamp)
    click.echo(f"deploying to {network.describe()} from {admin.address}")
    if not local:
        for role in roles:
            click.echo(f"  {role}: {roles[role]}")
        click.echo(f"  tokens: ETH, {', '.join(allow_tokens)}; fee {fee_bps} bps")
        click.echo(f"  next admin (proposed): {propose_admin or 'none, the deployer stays admin'}")
        if not yes:
            click.confirm("Deploy with these role holders?", abort=True)
        # one answer covers the deploy's ~20 transactions, not a question for each
        set_autosign = getattr(admin, "set_autosign", None)
        if set_autosign is not None:
            set_autosign(True)
    deployment = deploy_buzzer(admin, config)
    Console().print(deployment_table(deployment))
    if propose_admin is not None:
        click.echo(
            f"next: {propose_admin} calls accept_admin() on each of the four contracts; "
            "until then the deployer is their admin"
        )
    elif not local:
        click.echo(
            "next: hand every contract's admin role to the multisig "
            "(propose_admin, then accept_admin from it; docs/RUNBOOK.md)"
        )


def current_network() -> Network:
    provider = chain.provider
    try:
        client = str(provider.make_request("web3_clientVersion", []))
    except Exception:  # a node may not answer it; the client name only colours the message
        client = ""
    return Network(chain.chain_id, str(getattr(provider, "uri", "")), client)
