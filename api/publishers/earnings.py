"""A publisher's earnings from settled epochs and the claim transactions for them.

Per token: `earned` is the cumulative total in the newest live root (pending or not),
`claimable` what the newest root past its challenge period would pay now, `pending` what is
earned but still in a challenge period, `claimed` what the chain has paid. Leaves are paid
to the publisher's payment wallet; before any settlement the summary is empty."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from api.core.chain import TxData, transaction
from api.core.errors import Conflict
from api.core.settings import Settings
from api.publishers.schemas import EarningsPublic, TokenEarnings
from api.publishers.service import onchain_status, profile_of


def _accounts(session: Session, settings: Settings, wallet: str) -> list[str]:
    status = onchain_status(session, settings.chain_id, wallet)
    accounts = {wallet.lower()}
    if status.payment_wallet:
        accounts.add(status.payment_wallet.lower())
    return sorted(accounts)


def _leaves(session: Session, chain_id: int, accounts: list[str], status: str | None) -> Any:
    """The newest leaf per (account, token) among roots with this status (any live one if
    None)."""
    return session.execute(
        text(
            "SELECT DISTINCT ON (p.account, p.token) p.epoch, p.account, p.token,"
            " p.cumulative, p.proof FROM payout_proofs p"
            " JOIN payout_root_status r ON r.chain_id = p.chain_id AND r.epoch = p.epoch"
            " WHERE p.chain_id = :chain AND p.account = ANY(:accounts)"
            " AND r.status <> 'revoked' AND (CAST(:status AS text) IS NULL OR r.status = :status)"
            " ORDER BY p.account, p.token, p.epoch DESC"
        ),
        {"chain": chain_id, "accounts": accounts, "status": status},
    ).all()


def _claimed(session: Session, chain_id: int, accounts: list[str]) -> dict[tuple[str, str], int]:
    rows = session.execute(
        text(
            "SELECT account, token, max(cumulative_amount) AS paid FROM payout_claims"
            " WHERE chain_id = :chain AND account = ANY(:accounts) GROUP BY account, token"
        ),
        {"chain": chain_id, "accounts": accounts},
    )
    return {(r.account.lower(), r.token.lower()): int(r.paid) for r in rows}


def summary(session: Session, settings: Settings, wallet: str) -> EarningsPublic:
    profile_of(session, wallet)
    accounts = _accounts(session, settings, wallet)
    newest = {(r.account, r.token): r for r in _leaves(session, settings.chain_id, accounts, None)}
    ready = {
        (r.account, r.token): r for r in _leaves(session, settings.chain_id, accounts, "claimable")
    }
    claimed = _claimed(session, settings.chain_id, accounts)
    tokens = []
    for key in sorted(newest):
        earned = int(newest[key].cumulative)
        ready_total = int(ready[key].cumulative) if key in ready else 0
        paid = claimed.get(key, 0)
        tokens.append(
            TokenEarnings(
                account=key[0],
                token=key[1],
                earned=earned,
                claimed=paid,
                claimable=max(ready_total - paid, 0),
                pending=earned - max(ready_total, paid),
                latest_epoch=newest[key].epoch,
                claimable_epoch=ready[key].epoch if key in ready else None,
            )
        )
    return EarningsPublic(tokens=tokens)


def claim_txs(session: Session, settings: Settings, wallet: str) -> list[TxData]:
    """`PublisherPayout.claim` for every token with something to claim now. Anyone may send
    a claim; the money always goes to the leaf's account."""
    profile_of(session, wallet)
    accounts = _accounts(session, settings, wallet)
    claimed = _claimed(session, settings.chain_id, accounts)
    txs = []
    for leaf in _leaves(session, settings.chain_id, accounts, "claimable"):
        amount = int(leaf.cumulative) - claimed.get((leaf.account, leaf.token), 0)
        if amount <= 0:
            continue
        txs.append(
            transaction(
                settings.chain_id,
                "PublisherPayout",
                "claim",
                leaf.epoch,
                leaf.account,
                leaf.token,
                int(leaf.cumulative),
                [bytes.fromhex(node.removeprefix("0x")) for node in leaf.proof],
                description=f"Claim {amount} of {leaf.token} to {leaf.account}",
            )
        )
    if not txs:
        raise Conflict("nothing to claim yet", code="nothing_to_claim")
    return txs
