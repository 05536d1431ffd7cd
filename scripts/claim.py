"""`ape run claim`: claim a publisher's cumulative earnings from PublisherPayout with the
proofs of an epoch's payout artefact (the JSON of `PayoutTree.to_artefact`).

From `ape console`: `from scripts.claim import claim_from_artefact`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from ape import chain
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option

from api.settlement.merkle import MerkleError, PayoutTree
from scripts._common import (
    AddressParam,
    Echo,
    ScriptError,
    current_deployment,
    deployed,
    event_args,
    read_json,
    select_account,
    send,
)

LOCAL_PUBLISHER = 7  # the contract tests' publisher
EMPTY_ROOT = b"\x00" * 32


def claim_from_artefact(
    sender: AccountAPI,
    artefact: dict[str, Any],
    account: str | None = None,
    tokens: tuple[str, ...] = (),
    echo: Echo = click.echo,
) -> dict[str, int]:
    """Claim for `account` (default: `sender`) every token it has a leaf for (or `tokens`).

    Returns what was paid per token. Raises `ScriptError` when nothing was paid at all:
    the root is not claimable (yet), or every leaf was claimed already."""
    try:
        tree = PayoutTree.from_artefact(artefact)
    except MerkleError as exc:
        raise ScriptError(f"bad artefact: {exc}") from None
    epoch = artefact.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= 0:
        raise ScriptError(f"bad artefact: epoch {epoch!r} is not a positive integer")
    deployment = current_deployment()
    payout = deployed(deployment, "PublisherPayout")
    if tree.chain_id != chain.chain_id:
        raise ScriptError(f"artefact is for chain {tree.chain_id}, connected to {chain.chain_id}")
    if tree.payout_contract != payout.address:
        raise ScriptError(
            f"artefact is for payout contract {tree.payout_contract}, "
            f"this deployment's is {payout.address}"
        )
    claimant = account or sender.address
    leaves = [leaf for leaf in tree.leaves if leaf.account == claimant]
    if tokens:
        leaves = [leaf for leaf in leaves if leaf.token in tokens]
    if not leaves:
        which = f" in token(s) {', '.join(tokens)}" if tokens else ""
        raise ScriptError(f"nothing to claim: {claimant} has no leaf{which} in epoch {epoch}")

    _require_claimable(payout, epoch, tree)
    paid: dict[str, int] = {}
    for leaf in leaves:
        already = int(payout.get_total_paid(claimant, leaf.token))
        if leaf.cumulative_amount <= already:
            echo(f"nothing to claim in token {leaf.token}: {already} already paid to {claimant}")
            continue
        proof = tree.proof(leaf.account, leaf.token)
        receipt = send(
            f"claim epoch {epoch} token {leaf.token}",
            payout,
            "claim",
            epoch,
            claimant,
            leaf.token,
            leaf.cumulative_amount,
            proof,
            sender=sender,
            echo=echo,
        )
        amount = int(event_args(receipt, payout, "Claimed")["amount"])
        paid[leaf.token] = amount
        echo(f"paid {amount} of token {leaf.token} to {claimant}")
    if not paid:
        raise ScriptError(f"nothing to claim: {claimant} was paid everything in epoch {epoch}")
    return paid


def _require_claimable(payout: Any, epoch: int, tree: PayoutTree) -> None:
    """Refuse, with the reason, a root that is missing, different, revoked or still pending."""
    posted = payout.get_root(epoch)
    if bytes(posted.root) == EMPTY_ROOT:
        raise ScriptError(f"epoch {epoch} has no root posted on chain {chain.chain_id}")
    if bytes(posted.root) != tree.root:
        raise ScriptError(
            f"artefact root 0x{tree.root.hex()} differs from epoch {epoch}'s on-chain root "
            f"0x{bytes(posted.root).hex()}"
        )
    if payout.revoked(epoch):
        raise ScriptError(f"root of epoch {epoch} was revoked by the guardian")
    now = chain.blocks.head.timestamp
    if now < posted.claimable_at:
        at = datetime.fromtimestamp(posted.claimable_at, UTC).isoformat(timespec="seconds")
        raise ScriptError(
            f"root not claimable yet: epoch {epoch} opens at {at} "
            f"(in {posted.claimable_at - now} s of chain time)"
        )


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option(
    "--artefact",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The epoch's payout artefact JSON",
)
@click.option(
    "--for",
    "claim_for",
    type=AddressParam(),
    help="The account to claim for (default: the sender); anyone may claim for anyone",
)
@click.option(
    "--token",
    "tokens",
    type=AddressParam(allow_eth=True),
    multiple=True,
    help="Only this token (repeatable; `eth` for ETH). Default: every token with a leaf",
)
def cli(
    account: AccountAPI | None, artefact: Path, claim_for: str | None, tokens: tuple[str, ...]
) -> None:
    """Claim earnings with an artefact's proofs (local default sender: test account 7)."""
    sender = select_account(account, LOCAL_PUBLISHER)
    claim_from_artefact(sender, read_json(artefact, "artefact"), claim_for, tokens)
