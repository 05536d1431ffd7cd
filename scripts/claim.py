"""`ape run claim`: claim a publisher's cumulative earnings from PublisherPayout with the
proofs of a payout artefact (settlement's `buzzer-payout-v2`, or `PayoutTree.to_artefact`'s
v1), read from a file or the URL the root was posted with.

Claims verify only against the payout's current root (the newest matured, unrevoked one), so
only the artefact of that root can pay: an older one was superseded by the root that
followed it, even where its own numbers look right.

    claim_from_artefact(sender, read_artefact(path_or_url))             # pays the sender
    claim_from_artefact(sender, artefact, recipient="0x…")              # claim_to: pays another

From `ape console`: `from scripts.claim import claim_from_artefact`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from ape import chain
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option

from api.settlement.artefact import ArtefactError, load
from api.settlement.merkle import MerkleError, PayoutTree
from scripts._common import (
    AddressParam,
    Echo,
    ScriptError,
    current_deployment,
    deployed,
    event_args,
    select_account,
    send,
)

LOCAL_PUBLISHER = 7  # the contract tests' publisher


def claim_from_artefact(
    sender: AccountAPI,
    artefact: dict[str, Any],
    account: str | None = None,
    tokens: tuple[str, ...] = (),
    recipient: str | None = None,
    echo: Echo = click.echo,
) -> dict[str, int]:
    """Claim for `account` (default: `sender`) every token it has a leaf for (or `tokens`).

    With `recipient`, the sender claims its own leaves and the payout pays `recipient`
    (`claim_to`). Returns what was paid per token. Raises `ScriptError` when nothing was paid
    at all: the artefact's root is not the current one, or every leaf was claimed already."""
    try:
        tree = PayoutTree.from_artefact(artefact)
    except MerkleError as exc:
        raise ScriptError(f"bad artefact: {exc}") from None
    root_id = _artefact_root_id(artefact)
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
    if recipient is not None and claimant != sender.address:
        raise ScriptError(
            f"--to pays the sender's own earnings elsewhere; {sender.address} cannot redirect "
            f"{claimant}'s (drop --for, or --to)"
        )
    leaves = [leaf for leaf in tree.leaves if leaf.account == claimant]
    if tokens:
        leaves = [leaf for leaf in leaves if leaf.token in tokens]
    if not leaves:
        which = f" in token(s) {', '.join(tokens)}" if tokens else ""
        raise ScriptError(f"nothing to claim: {claimant} has no leaf{which} in this artefact")

    current = _require_current(payout, tree, root_id)
    paid: dict[str, int] = {}
    for leaf in leaves:
        already = int(payout.claimed(claimant, leaf.token))
        if leaf.cumulative_amount <= already:
            echo(f"nothing to claim in token {leaf.token}: {already} already paid to {claimant}")
            continue
        proof = tree.proof(leaf.account, leaf.token)
        label = f"claim root {current} token {leaf.token}"
        if recipient is None:
            args: tuple[Any, ...] = ("claim", claimant, leaf.token, leaf.cumulative_amount, proof)
        else:
            label += f" to {recipient}"
            args = ("claim_to", recipient, leaf.token, leaf.cumulative_amount, proof)
        receipt = send(label, payout, *args, sender=sender, echo=echo)
        amount = int(event_args(receipt, payout, "Claimed")["amount"])
        paid[leaf.token] = amount
        echo(f"paid {amount} of token {leaf.token} to {recipient or claimant}")
    if not paid:
        raise ScriptError(f"nothing to claim: {claimant} was paid everything under root {current}")
    return paid


def _artefact_root_id(artefact: dict[str, Any]) -> int | None:
    """The root id the artefact names: `root_id`, or `epoch` in artefacts written before
    the payout's roots were numbered by id. Neither is needed: the root itself decides."""
    for key in ("root_id", "epoch"):
        if key in artefact:
            value = artefact[key]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ScriptError(f"bad artefact: {key} {value!r} is not a positive integer")
            return value
    return None


def _at(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _require_current(payout: Any, tree: PayoutTree, root_id: int | None) -> int:
    """The current root's id when it is the artefact's root; otherwise refuse with the reason:
    paused, still pending, revoked, superseded, or never posted."""
    if payout.paused():
        raise ScriptError("the payout is paused by the guardian: claims wait until it resumes")
    artefact_root = "0x" + tree.root.hex()
    current = int(payout.current_root_id())
    if current and bytes(payout.get_root(current).root) == tree.root:
        return current
    pending = int(payout.pending_root_id())
    if pending and bytes(payout.get_root(pending).root) == tree.root:
        opens = int(payout.get_root(pending).claimable_at)
        now = chain.blocks.head.timestamp
        raise ScriptError(
            f"root not claimable yet: root {pending} opens at {_at(opens)} "
            f"(in {opens - now} s of chain time)"
        )
    if root_id is not None and bytes(payout.get_root(root_id).root) == tree.root:
        if payout.revoked(root_id):
            raise ScriptError(f"root {root_id} was revoked by the guardian: it can never pay")
        if root_id < current:
            raise ScriptError(
                f"artefact root {root_id} ({artefact_root}) was superseded by root {current}, "
                f"the payout's current root: it cannot pay; claim with root {current}'s artefact"
            )
    if not current:
        raise ScriptError(
            f"no root is claimable on chain {chain.chain_id} yet, and the artefact's root "
            f"{artefact_root} is not the pending one"
        )
    current_root = "0x" + bytes(payout.get_root(current).root).hex()
    raise ScriptError(
        f"artefact root {artefact_root} is not the payout's current root {current} "
        f"({current_root}): a superseded or unposted artefact cannot pay; claim with root "
        f"{current}'s artefact"
    )


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option(
    "--artefact",
    required=True,
    help="The payout artefact of the payout's current root: a file or its http(s) URL",
)
@click.option(
    "--for",
    "claim_for",
    type=AddressParam(),
    help="The account to claim for (default: the sender); anyone may claim for anyone",
)
@click.option(
    "--to",
    "recipient",
    type=AddressParam(),
    help="Pay the sender's own earnings to this address instead (claim_to)",
)
@click.option(
    "--token",
    "tokens",
    type=AddressParam(allow_eth=True),
    multiple=True,
    help="Only this token (repeatable; `eth` for ETH). Default: every token with a leaf",
)
def cli(
    account: AccountAPI | None,
    artefact: str,
    claim_for: str | None,
    recipient: str | None,
    tokens: tuple[str, ...],
) -> None:
    """Claim earnings with an artefact's proofs (local default sender: test account 7)."""
    sender = select_account(account, LOCAL_PUBLISHER)
    claim_from_artefact(sender, read_artefact(artefact), claim_for, tokens, recipient)


def read_artefact(source: str) -> dict[str, Any]:
    """An artefact from a file, a file:// URL or an http(s) URL (as the root's
    `artefact_uri` names it)."""
    try:
        return load(source)
    except ArtefactError as exc:
        raise ScriptError(str(exc)) from None
