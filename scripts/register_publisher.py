"""`ape run register_publisher`: register the account as a Buzzer publisher under a pub_id.

From `ape console`: `from scripts.register_publisher import register_publisher`.
"""

from __future__ import annotations

import click
from ape.api import AccountAPI, ReceiptAPI
from ape.cli import ConnectedProviderCommand, account_option
from eth_utils import keccak

from scripts._common import (
    ZERO_ADDRESS,
    AddressParam,
    Echo,
    ScriptError,
    current_deployment,
    deployed,
    select_account,
    send,
)

LOCAL_PUBLISHER = 7  # the contract tests' publisher
MAX_PUB_ID_BYTES = 64


def register_publisher(
    account: AccountAPI, pub_id: str, payment_wallet: str | None = None, echo: Echo = click.echo
) -> ReceiptAPI:
    """Register `account` as publisher `pub_id`, paid to `payment_wallet` (default: itself)."""
    if not pub_id or len(pub_id.encode()) > MAX_PUB_ID_BYTES:
        raise ScriptError(f"pub_id must be 1 to {MAX_PUB_ID_BYTES} bytes, got {pub_id!r}")
    registry = deployed(current_deployment(), "PublisherRegistry")
    if registry.is_registered(account.address):
        existing = registry.get_publisher(account.address).pub_id
        raise ScriptError(f"{account.address} is already registered as publisher {existing!r}")
    owner = registry.pub_id_owner(keccak(text=pub_id))
    if owner != ZERO_ADDRESS:
        raise ScriptError(f"pub_id {pub_id!r} is taken by {owner}")
    wallet = payment_wallet or account.address
    receipt = send(
        f"register publisher {pub_id!r}",
        registry,
        "register",
        pub_id,
        wallet,
        sender=account,
        echo=echo,
    )
    echo(f"publisher {account.address} registered as {pub_id!r}, paid to {wallet}")
    return receipt


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option("--pub-id", required=True, help="The publisher's public id, as used in ad requests")
@click.option(
    "--payment-wallet",
    type=AddressParam(),
    help="Where x402 payments and payouts go (default: the account)",
)
def cli(account: AccountAPI | None, pub_id: str, payment_wallet: str | None) -> None:
    """Register the account (local default: test account 7) as a publisher."""
    register_publisher(select_account(account, LOCAL_PUBLISHER), pub_id, payment_wallet)
