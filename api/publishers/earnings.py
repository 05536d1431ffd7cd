"""A publisher's earnings from settled epochs and the claim transactions for them.

Per token: `earned` is the cumulative total in the newest live root (current or pending),
`claimable` what the current root (the newest matured, unrevoked one, the only root claims
verify against) would pay now, `pending` what is earned but still in a challenge period,
`claimed` what the chain has paid. A superseded root's proof pays nothing and is never
offered. Leaves are paid to the publisher's payment wallet; before any settlement the
summary is empty."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from api.core.chain import TxData, transaction
from api.core.errors import Conflict
from api.core.settings import Settings
from api.publishers.schemas import EarningsPublic, EpochEarnings, TokenEarnings
from api.publishers.service import onchain_status, profile_of
from api.settlement.schemas import (
    ClaimProof,
    ClaimRecord,
    ClaimsPublic,
    PendingLeaf,
    PushRecord,
    X402Received,
)


def _accounts(session: Session, settings: Settings, wallet: str) -> list[str]:
    status = onchain_status(session, settings.chain_id, wallet)
    accounts = {wallet.lower()}
    if status.payment_wallet:
        accounts.add(status.payment_wallet.lower())
    return sorted(accounts)


def _leaves(session: Session, chain_id: int, accounts: list[str], statuses: list[str]) -> Any:
    """The newest leaf per (account, token) among roots with one of these statuses."""
    return session.execute(
        text(
            "SELECT DISTINCT ON (p.account, p.token) p.root_id, p.account, p.token,"
            " p.cumulative, p.proof FROM payout_proofs p"
            " JOIN payout_root_status r ON r.chain_id = p.chain_id AND r.root_id = p.root_id"
            " WHERE p.chain_id = :chain AND p.account = ANY(:accounts)"
            " AND r.status = ANY(:statuses)"
            " ORDER BY p.account, p.token, p.root_id DESC"
        ),
        {"chain": chain_id, "accounts": accounts, "statuses": statuses},
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
    live = _leaves(session, settings.chain_id, accounts, ["current", "pending"])
    newest = {(r.account, r.token): r for r in live}
    ready = {
        (r.account, r.token): r for r in _leaves(session, settings.chain_id, accounts, ["current"])
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
                # a correction may lower a leaf below the current root's
                pending=max(earned - max(ready_total, paid), 0),
                latest_root_id=newest[key].root_id,
                claimable_root_id=ready[key].root_id if key in ready else None,
            )
        )
    return EarningsPublic(tokens=tokens)


def per_epoch(
    session: Session, settings: Settings, wallet: str, limit: int = 500
) -> list[EpochEarnings]:
    """What each settled epoch allocated to the publisher's payment wallets, per token,
    newest first (the allocation rows settlement writes; `amount` is none until allocated)."""
    profile_of(session, wallet)
    accounts = _accounts(session, settings, wallet)
    rows = session.execute(
        text(
            "SELECT a.epoch, a.token, a.account, sum(a.events) AS events,"
            " sum(a.amount) AS amount, bool_or(a.amount IS NULL) AS open, e.state, e.root_id"
            " FROM settlement_allocations a JOIN settlement_epochs e"
            " ON e.chain_id = a.chain_id AND e.epoch = a.epoch"
            " WHERE a.chain_id = :chain AND a.account = ANY(:accounts)"
            " GROUP BY a.epoch, a.token, a.account, e.state, e.root_id"
            " ORDER BY a.epoch DESC, a.token, a.account LIMIT :limit"
        ),
        {"chain": settings.chain_id, "accounts": accounts, "limit": limit},
    )
    return [
        EpochEarnings(
            epoch=row.epoch,
            token=row.token,
            account=row.account,
            events=int(row.events),
            amount=None if row.open else int(row.amount),
            state=row.state,
            root_id=row.root_id,
        )
        for row in rows
    ]


def claim_txs(session: Session, settings: Settings, wallet: str) -> list[TxData]:
    """`PublisherPayout.claim` for every token with something to claim under the current
    root. Anyone may send a claim; the money always goes to the leaf's account."""
    profile_of(session, wallet)
    accounts = _accounts(session, settings, wallet)
    txs = [c.transaction for c in _claimable(session, settings, accounts) if c.transaction]
    if not txs:
        raise Conflict("nothing to claim yet", code="nothing_to_claim")
    return txs


def _claimable(session: Session, settings: Settings, accounts: list[str]) -> list[ClaimProof]:
    """Each leaf of the current root with its proof, what it pays now and its claim
    transaction (none when it pays nothing)."""
    claimed = _claimed(session, settings.chain_id, accounts)
    claimable = []
    for leaf in _leaves(session, settings.chain_id, accounts, ["current"]):
        paid = claimed.get((leaf.account, leaf.token), 0)
        amount = max(int(leaf.cumulative) - paid, 0)
        proof = [str(node) for node in leaf.proof]
        claimable.append(
            ClaimProof(
                account=leaf.account,
                token=leaf.token,
                root_id=leaf.root_id,
                cumulative=int(leaf.cumulative),
                claimed=paid,
                claimable=amount,
                proof=proof,
                transaction=transaction(
                    settings.chain_id,
                    "PublisherPayout",
                    "claim",
                    leaf.account,
                    leaf.token,
                    int(leaf.cumulative),
                    [bytes.fromhex(node.removeprefix("0x")) for node in proof],
                    description=f"Claim {amount} of {leaf.token} to {leaf.account}",
                )
                if amount
                else None,
            )
        )
    return claimable


def claims(session: Session, settings: Settings, wallet: str) -> ClaimsPublic:
    """What the publisher can claim now (with the proof and the transaction), what waits in a
    challenge period, and its payment history: claims paid and x402 payments received."""
    profile_of(session, wallet)
    accounts = _accounts(session, settings, wallet)
    claimable = _claimable(session, settings, accounts)
    pending = [
        PendingLeaf(
            account=row.account,
            token=row.token,
            root_id=row.root_id,
            cumulative=int(row.cumulative),
            claimable_at=int(row.claimable_at),
        )
        for row in session.execute(
            text(
                "SELECT p.account, p.token, p.root_id, p.cumulative, r.claimable_at"
                " FROM payout_proofs p JOIN payout_root_status r ON r.chain_id = p.chain_id"
                " AND r.root_id = p.root_id WHERE p.chain_id = :chain"
                " AND p.account = ANY(:accounts) AND r.status = 'pending'"
                " ORDER BY p.root_id, p.account, p.token"
            ),
            {"chain": settings.chain_id, "accounts": accounts},
        )
    ]
    history = [
        ClaimRecord(
            account=row.account,
            token=row.token,
            recipient=row.recipient,
            amount=int(row.amount),
            root_id=row.root_id,
            block_number=row.block_number,
            tx_hash=row.tx_hash,
        )
        for row in session.execute(
            text(
                "SELECT account, token, recipient, amount, root_id, block_number, tx_hash"
                " FROM payout_claims WHERE chain_id = :chain AND account = ANY(:accounts)"
                " ORDER BY block_number DESC, log_index DESC LIMIT 200"
            ),
            {"chain": settings.chain_id, "accounts": accounts},
        )
    ]
    received = [
        X402Received(
            slot_id=row.slot_key,
            payer=row.payer,
            asset=row.asset,
            amount=int(row.amount),
            state=row.state,
            tx_hash=row.tx_hash,
            created_at=row.created_at.isoformat(),
        )
        for row in session.execute(
            text(
                "SELECT slot_key, payer, asset, amount, state, tx_hash, created_at"
                " FROM x402_payments WHERE chain_id = :chain AND pay_to = ANY(:accounts)"
                " ORDER BY created_at DESC LIMIT 200"
            ),
            {"chain": settings.chain_id, "accounts": accounts},
        )
    ]
    pushes = [
        PushRecord(**row)
        for row in session.execute(
            text(
                "SELECT root_id, account, token, amount, status, reason, attempts, tx_hash"
                " FROM settlement_pushes WHERE chain_id = :chain AND account = ANY(:accounts)"
                " ORDER BY root_id DESC, account, token LIMIT 200"
            ),
            {"chain": settings.chain_id, "accounts": accounts},
        ).mappings()
    ]
    return ClaimsPublic(
        claimable=claimable, pending=pending, claims=history, x402_payments=received, pushes=pushes
    )
