"""The money math of settlement, on random inputs: charges, the escrow's clipping, the 85/15
split, largest-remainder allocation and cumulative leaves. Every unit charged ends up with a
publisher or the network, allocations sum exactly to each campaign's publisher share, and no
leaf is ever below what its account claimed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.settlement import money

FEE_BPS = 1_500  # the escrow's network fee: 15%
WALLETS = [f"0x{i:040x}" for i in range(1, 9)]
TOKENS = ["0x" + "aa" * 20, "0x" + "bb" * 20]
UINT = st.integers(min_value=0, max_value=10**24)


def split(charged: int) -> tuple[int, int]:
    """PaymentEscrow.spend_batch: share = charged·(BPS − fee)/BPS rounded down, fee the rest."""
    share = charged * (10_000 - FEE_BPS) // 10_000
    return share, charged - share


def test_cpm_bids_are_summed_before_the_one_division() -> None:
    # three impressions at 1,999 per thousand: 5,997 / 1000 = 5, where dividing each first
    # would charge 3 and rounding each up would charge 6
    assert money.charge("cpm", 3 * 1_999) == 5
    assert money.charge("cpc", 3 * 1_999) == 5_997


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(money.MoneyError, match="unknown bid model"):
        money.charge("cpa", 10)
    with pytest.raises(money.MoneyError, match="negative"):
        money.charge("cpm", -1)
    with pytest.raises(money.MoneyError, match="no weight"):
        money.allocate(5, {WALLETS[0]: 0})
    with pytest.raises(money.MoneyError, match="negative"):
        money.allocate(5, {WALLETS[0]: -1})


def test_largest_remainder_ties_go_in_address_order() -> None:
    # 10 over three equal weights: 3 each and one unit left, to the lowest address
    parts = money.allocate(10, {WALLETS[2]: 1, WALLETS[0]: 1, WALLETS[1]: 1})
    assert parts == {WALLETS[0]: 4, WALLETS[1]: 3, WALLETS[2]: 3}


@settings(max_examples=300, deadline=None)
@given(
    share=UINT,
    weights=st.dictionaries(st.sampled_from(WALLETS), UINT, min_size=1).filter(
        lambda w: sum(w.values()) > 0
    ),
)
def test_allocation_sums_exactly_and_is_within_one_unit_of_proportional(
    share: int, weights: dict[str, int]
) -> None:
    parts = money.allocate(share, weights)
    assert sum(parts.values()) == share
    total = sum(weights.values())
    for wallet, weight in weights.items():
        exact = share * weight / total
        assert abs(parts[wallet] - exact) < 1 + 1e-9 * max(1, exact)
        if weight == 0:
            assert parts[wallet] == 0
    # the order the wallets were read in does not matter
    assert money.allocate(share, dict(reversed(list(weights.items())))) == parts


campaign = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["cpm", "cpc"]),
        "token": st.sampled_from(TOKENS),
        # per publisher wallet: the serve-time bids of its verified events
        "bids": st.dictionaries(
            st.sampled_from(WALLETS),
            st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=20),
            min_size=1,
        ),
        "balance": UINT,
        "max_spend": UINT,
        # the escrow's balance may drop between charge and spend (a withdraw maturing)
        "withdrawn": UINT,
    }
)


@settings(max_examples=200, deadline=None)
@given(
    campaigns=st.lists(campaign, min_size=1, max_size=6),
    claimed_fraction=st.fractions(min_value=0, max_value=1),
    epochs=st.integers(min_value=1, max_value=3),
)
def test_every_unit_charged_goes_to_a_publisher_or_the_network(
    campaigns: list[dict], claimed_fraction, epochs: int
) -> None:
    leaves: dict[tuple[str, str], int] = {}
    claimed: dict[tuple[str, str], int] = {}
    charged_total = fees_total = earned_total = 0
    for _ in range(epochs):
        allocations: list[tuple[tuple[str, str], int]] = []
        for c in campaigns:
            bid_sum = sum(sum(bids) for bids in c["bids"].values())
            amount = money.charge(c["model"], bid_sum)
            asked = money.ask(amount, c["balance"], c["max_spend"])
            assert asked <= amount and asked <= c["balance"] and asked <= c["max_spend"]
            # the escrow clips to what is left when the spend lands
            left = max(0, c["balance"] - c["withdrawn"])
            charged = min(asked, left, c["max_spend"])
            c["balance"] = left - charged
            c["withdrawn"] = 0
            share, fee = split(charged)
            weights = {w: sum(bids) for w, bids in c["bids"].items()}
            parts = money.allocate(share, weights)
            assert sum(parts.values()) == share
            allocations += [((w, c["token"]), amount) for w, amount in parts.items()]
            charged_total += charged
            fees_total += fee
            earned_total += share
        previous = leaves
        leaves = money.cumulative(previous, allocations, claimed)
        # leaves = previous + allocations, exactly (nobody was lowered, nobody raised)
        for key, amount in leaves.items():
            assert amount == previous.get(key, 0) + sum(a for k, a in allocations if k == key)
        assert sum(leaves.values()) == earned_total
        assert earned_total + fees_total == charged_total
        # publishers claim part of what the current leaves pay
        for key, amount in leaves.items():
            claimed[key] = max(claimed.get(key, 0), int(amount * claimed_fraction))
        for key, paid in claimed.items():
            assert leaves.get(key, 0) >= paid


@given(
    previous=st.dictionaries(st.tuples(st.sampled_from(WALLETS), st.sampled_from(TOKENS)), UINT),
    claimed=st.dictionaries(st.tuples(st.sampled_from(WALLETS), st.sampled_from(TOKENS)), UINT),
)
def test_a_leaf_is_never_below_what_its_account_claimed(
    previous: dict[tuple[str, str], int], claimed: dict[tuple[str, str], int]
) -> None:
    leaves = money.cumulative(previous, [], claimed)
    for key, paid in claimed.items():
        assert leaves.get(key, 0) >= paid
    for key, amount in previous.items():
        assert leaves.get(key, 0) >= amount
