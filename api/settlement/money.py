"""The money math of settlement, in integer atomic units and nothing else.

    charge("cpm", bid_sum=2_500_000)                 # → 2_500: Σ bids / 1000, rounded down once
    ask(amount, free_balance, max_in_force)          # what is asked of the escrow
    allocate(850, {"0xa…": 3, "0xb…": 1})            # → {"0xa…": 638, "0xb…": 212}: sums to 850
    cumulative(previous, allocations, claimed)       # the next root's leaves

Shares are split by largest remainder: each wallet gets ⌊share·w/W⌋ and the units left over
go one each to the largest remainders, ties broken by address, so the parts always sum to the
whole and the result does not depend on the order the wallets were read in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CPM, CPC = "cpm", "cpc"
Key = tuple[str, str]  # (account, token), lowercase


class MoneyError(ValueError):
    """Inputs the money math refuses (negative amounts, an unknown bid model)."""


def charge(bid_model: str, bid_sum: int) -> int:
    """What a campaign's verified events come to: CPM bids are per thousand impressions, so
    their sum is divided by 1000 once (rounded down); CPC bids are per click."""
    if bid_sum < 0:
        raise MoneyError(f"bid sum {bid_sum} is negative")
    if bid_model == CPM:
        return bid_sum // 1000
    if bid_model == CPC:
        return bid_sum
    raise MoneyError(f"unknown bid model {bid_model!r}")


def ask(amount: int, free_balance: int, max_in_force: int) -> int:
    """What to ask the escrow for: the charge, capped by what the campaign has and its max
    spend for the epoch (the escrow clips again at spend time; this keeps the ask honest)."""
    return max(0, min(amount, free_balance, max_in_force))


def allocate(share: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split `share` over `weights` by largest remainder; the parts sum to `share` exactly.
    Wallets with zero weight get nothing; with no weight at all, nothing can be split."""
    if share < 0:
        raise MoneyError(f"share {share} is negative")
    if any(w < 0 for w in weights.values()):
        raise MoneyError("weights must not be negative")
    total = sum(weights.values())
    if share == 0:
        return {account: 0 for account in weights}
    if total == 0:
        raise MoneyError(f"{share} to split over no weight")
    parts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for account, weight in weights.items():
        whole, remainder = divmod(share * weight, total)
        parts[account] = whole
        remainders.append((remainder, account))
    left = share - sum(parts.values())
    # largest remainder first; equal remainders in address order
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, account in remainders[:left]:
        parts[account] += 1
    return parts


def cumulative(
    previous: Mapping[Key, int],
    allocations: Iterable[tuple[Key, int]],
    claimed: Mapping[Key, int],
) -> dict[Key, int]:
    """The next root's leaves: every earlier leaf plus what was allocated since, never below
    what an account has claimed (a claim against a root that was later revoked stays paid)."""
    leaves = dict(previous)
    for key, amount in allocations:
        if amount < 0:
            raise MoneyError(f"allocation {amount} to {key} is negative")
        leaves[key] = leaves.get(key, 0) + amount
    for key, paid in claimed.items():
        if paid > leaves.get(key, 0):
            leaves[key] = paid
    return {key: amount for key, amount in leaves.items() if amount > 0}
