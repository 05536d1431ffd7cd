"""`ape run create_campaign`: register a campaign with its max spend per epoch, approve its
token and deposit its budget.

Amounts are integers in the token's atomic units. The max spend per epoch is the most the
escrow may charge the campaign for one spend epoch (the window the chain's clock counts
from the CampaignRegistry's genesis); by default it is the whole budget. The metadata hash
is keccak256 of the canonical JSON (sorted keys, compact) of `--metadata`, or of a small JSON
naming the bid.
From `ape console`: `from scripts.create_campaign import create_campaign`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from ape import project
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option

from scripts._common import (
    BID_MODELS,
    ZERO_ADDRESS,
    AddressParam,
    AtomicAmount,
    Echo,
    ScriptError,
    current_deployment,
    deployed,
    event_args,
    is_local_chain,
    local_test_account,
    metadata_hash,
    read_json,
    select_account,
    send,
)

LOCAL_ADVERTISER = 5  # the contract tests' advertiser
MAX_SPEND_LIMIT = 2**128 - 1  # CampaignRegistry.MAX_SPEND_LIMIT


def create_campaign(
    account: AccountAPI,
    budget: int,
    bid: int,
    bid_model: str = "cpm",
    token: str | None = None,
    metadata: Any = None,
    mint: bool = False,
    max_per_epoch: int | None = None,
    echo: Echo = click.echo,
) -> int:
    """Register a campaign owned by `account` and fund it with `budget`; return its id.

    `token` is an ERC-20 address or the zero address for ETH; by default the deployment's
    TestUSDC. `max_per_epoch` caps what one epoch's settlement may charge (default: the
    budget). Nothing is sent unless the account can pay the whole budget."""
    deployment = current_deployment()
    campaigns = deployed(deployment, "CampaignRegistry")
    escrow = deployed(deployment, "PaymentEscrow")
    test_token = deployment.contracts.get("TestUSDC")
    if token is None:
        if test_token is None:
            raise ScriptError(
                f"chain {deployment.chain_id} has no TestUSDC: pass --token ADDRESS or --token eth"
            )
        token = test_token
    if bid_model not in BID_MODELS:
        raise ScriptError(f"bid model must be one of {', '.join(BID_MODELS)}, got {bid_model!r}")
    if not escrow.allowed_tokens(token):
        raise ScriptError(f"token {token} is not allow-listed in the escrow {escrow.address}")
    max_spend = budget if max_per_epoch is None else max_per_epoch
    if max_spend > MAX_SPEND_LIMIT:
        raise ScriptError(f"max per epoch {max_spend} is above the registry's limit 2**128 - 1")
    if metadata is None:
        metadata = {"bid": bid, "bid_model": bid_model, "token": token}
    content_hash = metadata_hash(metadata)

    # only its ERC-20 functions are used
    erc20 = None if token == ZERO_ADDRESS else project.TestUSDC.at(token)
    if mint:
        if erc20 is None or token != test_token or not is_local_chain():
            raise ScriptError("--mint works only for the deployment's TestUSDC on a local chain")
        minter = local_test_account(deployment.roles["admin"])
        label = f"mint {budget} to {account.address}"
        send(label, erc20, "mint", account.address, budget, sender=minter, echo=echo)
    balance = account.balance if erc20 is None else erc20.balanceOf(account.address)
    if balance < budget:
        unit = "wei" if erc20 is None else f"atomic units of {token}"
        hint = " (add --mint on a local chain)" if token == test_token else ""
        raise ScriptError(
            f"{account.address} holds {balance} {unit}, less than the budget {budget}{hint}"
        )

    receipt = send(
        "register campaign",
        campaigns,
        "register",
        token,
        BID_MODELS[bid_model],
        bid,
        content_hash,
        max_spend,
        sender=account,
        echo=echo,
    )
    registered = event_args(receipt, campaigns, "CampaignRegistered")
    campaign_id = int(registered["campaign_id"])
    echo(f"campaign id {campaign_id} (metadata hash 0x{content_hash.hex()})")
    epoch = int(campaigns.current_epoch())
    ends = int(campaigns.epoch_end(epoch))
    echo(
        f"max spend per epoch {int(registered['max_spend_per_epoch'])}, in force from epoch "
        f"{epoch}, which ends at {datetime.fromtimestamp(ends, UTC).isoformat(timespec='seconds')}"
    )
    if erc20 is None:
        args = (campaign_id, budget, token)
        send("deposit", escrow, "deposit", *args, sender=account, value=budget, echo=echo)
    else:
        if erc20.allowance(account.address, escrow.address) < budget:
            send("approve", erc20, "approve", escrow.address, budget, sender=account, echo=echo)
        send("deposit", escrow, "deposit", campaign_id, budget, token, sender=account, echo=echo)
    echo(f"campaign {campaign_id} funded: {escrow.get_balance(campaign_id, token)} in escrow")
    return campaign_id


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option(
    "--token",
    type=AddressParam(allow_eth=True),
    help="ERC-20 address, or `eth` (default: the deployment's TestUSDC)",
)
@click.option("--bid-model", type=click.Choice(list(BID_MODELS)), default="cpm", show_default=True)
@click.option("--bid", type=AtomicAmount(), required=True, help="Bid in atomic units")
@click.option("--budget", type=AtomicAmount(), required=True, help="Deposit in atomic units")
@click.option(
    "--max-per-epoch",
    type=AtomicAmount(),
    help="The most one spend epoch may charge, in atomic units (default: the budget); "
    "the advertiser can change it later, from the next epoch on",
)
@click.option(
    "--metadata",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file of targeting and creative; its canonical keccak256 is stored",
)
@click.option("--mint", is_flag=True, help="Mint the budget first (local TestUSDC only)")
def cli(
    account: AccountAPI | None,
    token: str | None,
    bid_model: str,
    bid: int,
    budget: int,
    max_per_epoch: int | None,
    metadata: Path | None,
    mint: bool,
) -> None:
    """Register and fund a campaign from the account (local default: test account 5)."""
    content = None if metadata is None else read_json(metadata, "metadata")
    create_campaign(
        select_account(account, LOCAL_ADVERTISER),
        budget=budget,
        bid=bid,
        bid_model=bid_model,
        token=token,
        metadata=content,
        mint=mint,
        max_per_epoch=max_per_epoch,
    )
