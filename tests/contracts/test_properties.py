"""Stateful property test of the money paths: random sequences of deposits, withdraw
requests, withdrawals, spends, pauses, roots, revokes and claims, checked after every step
against a plain-Python model of what each contract must hold.

Invariants: escrow conservation (deposited = balance + withdrawn + spent, per campaign and
token; the escrow holds exactly the sum of balances), payout solvency (claimed ≤ funded;
the payout holds funded - claimed), cumulative totals never decrease, nothing is paid twice
(each publisher's wallet holds exactly what it claimed).

`BUZZER_PROPERTY_DEPTH=deep` runs many more and longer sequences than the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import ape
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from api.settlement.merkle import Leaf, PayoutTree
from tests.contracts.conftest import CHALLENGE_PERIOD, FEE_BPS, USDC, WITHDRAW_DELAY, ZERO

DEPTH = {
    "default": {"max_examples": 12, "stateful_step_count": 25},
    "deep": {"max_examples": 375, "stateful_step_count": 100},
}[os.environ.get("BUZZER_PROPERTY_DEPTH", "default")]

ETH_UNIT = 10**9  # ETH campaigns move gwei-sized amounts so balances stay readable


@dataclass
class CampaignModel:
    campaign_id: int
    advertiser: object
    token: str
    deposited: int = 0
    withdrawn: int = 0
    spent: int = 0
    last_spent_epoch: int = 0
    request_amount: int = 0
    request_at: int = 0

    @property
    def balance(self) -> int:
        return self.deposited - self.withdrawn - self.spent


@dataclass
class RootModel:
    epoch: int
    tree: PayoutTree
    cumulative: dict[tuple[str, str], int]
    claimable_at: int
    parent: int
    revoked: bool = False


@dataclass
class World:
    escrow: object
    payout: object
    usdc: object
    settler: object
    guardian: object
    admin: object
    treasury: object
    caller: object
    advertisers: list
    publishers: list
    register_campaign: object
    campaigns: list[CampaignModel] = field(default_factory=list)


def share_of(amount: int) -> int:
    return amount * (10_000 - FEE_BPS) // 10_000


def expect_revert(reason: str, call, *args, **kwargs) -> None:
    with ape.reverts(reason):
        call(*args, **kwargs)


def make_machine(world: World):
    tokens = [world.usdc.address, ZERO]

    class MoneyPaths(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.snapshot = ape.chain.snapshot()
            for campaign in world.campaigns:  # the chain starts afresh, so does the model
                campaign.deposited = campaign.withdrawn = campaign.spent = 0
                campaign.last_spent_epoch = campaign.request_amount = campaign.request_at = 0
            self.paused = False
            self.latest_epoch = 0
            self.funded = {token: 0 for token in tokens}
            self.claimed: dict[tuple[str, str], int] = {}
            self.roots: list[RootModel] = []
            self.head = 0
            self.posted_epoch = 0
            self.eth_start = {p.address: p.balance for p in world.publishers}
            self.treasury_usdc = world.usdc.balanceOf(world.treasury)

        def teardown(self) -> None:
            if hasattr(self, "snapshot"):
                ape.chain.restore(self.snapshot)

        # ---------------------------------------------------------------- escrow

        @rule(which=st.integers(0, 2), amount=st.integers(1, 5_000))
        def deposit(self, which: int, amount: int) -> None:
            campaign = world.campaigns[which]
            if campaign.token == ZERO:
                value = amount * ETH_UNIT
                call = lambda: world.escrow.deposit(  # noqa: E731
                    campaign.campaign_id, value, ZERO, value=value, sender=campaign.advertiser
                )
            else:
                value = amount * USDC
                world.usdc.approve(world.escrow, value, sender=campaign.advertiser)
                call = lambda: world.escrow.deposit(  # noqa: E731
                    campaign.campaign_id, value, campaign.token, sender=campaign.advertiser
                )
            if self.paused:
                expect_revert("guard: paused", call)
                return
            call()
            campaign.deposited += value

        @rule(which=st.integers(0, 2), fraction=st.integers(0, 120))
        def request_withdraw(self, which: int, fraction: int) -> None:
            campaign = world.campaigns[which]
            amount = campaign.balance * fraction // 100
            if fraction > 100:
                amount = campaign.balance + fraction
            call = world.escrow.request_withdraw
            args = (campaign.campaign_id, campaign.token, amount)
            if self.paused:
                expect_revert("guard: paused", call, *args, sender=campaign.advertiser)
            elif amount == 0:
                expect_revert("escrow: zero amount", call, *args, sender=campaign.advertiser)
            elif amount > campaign.balance:
                expect_revert(
                    "escrow: amount above balance", call, *args, sender=campaign.advertiser
                )
            else:
                call(*args, sender=campaign.advertiser)
                campaign.request_amount = amount
                campaign.request_at = ape.chain.blocks.head.timestamp + WITHDRAW_DELAY

        @rule(which=st.integers(0, 2))
        def withdraw(self, which: int) -> None:
            campaign = world.campaigns[which]
            args = (campaign.campaign_id, campaign.token)
            now = ape.chain.pending_timestamp
            payable = min(campaign.request_amount, campaign.balance)
            if self.paused:
                expect_revert(
                    "guard: paused", world.escrow.withdraw, *args, sender=campaign.advertiser
                )
            elif campaign.request_amount == 0:
                expect_revert(
                    "escrow: no pending withdraw",
                    world.escrow.withdraw,
                    *args,
                    sender=campaign.advertiser,
                )
            elif now < campaign.request_at:
                expect_revert(
                    "escrow: withdraw delay not over",
                    world.escrow.withdraw,
                    *args,
                    sender=campaign.advertiser,
                )
            elif payable == 0:
                expect_revert(
                    "escrow: nothing to withdraw",
                    world.escrow.withdraw,
                    *args,
                    sender=campaign.advertiser,
                )
            else:
                tx = world.escrow.withdraw(*args, sender=campaign.advertiser)
                assert tx.events.filter(world.escrow.Withdrawn)[0].amount == payable
                campaign.withdrawn += payable
                campaign.request_amount = 0

        @rule(seconds=st.integers(1, 3 * 86_400))
        def advance_time(self, seconds: int) -> None:
            ape.chain.mine(timestamp=ape.chain.pending_timestamp + seconds)

        @rule(
            picks=st.lists(
                st.tuples(st.integers(0, 2), st.integers(0, 110)), min_size=1, max_size=3
            ),
            next_epoch=st.booleans(),
        )
        def spend(self, picks: list[tuple[int, int]], next_epoch: bool) -> None:
            epoch = max(1, self.latest_epoch + (1 if next_epoch else 0))
            ids, amounts, expected_error = [], [], None
            seen: set[int] = set()
            for which, percent in picks:
                campaign = world.campaigns[which]
                amount = (
                    campaign.balance * percent // 100 if percent <= 100 else campaign.balance + 1
                )
                ids.append(campaign.campaign_id)
                amounts.append(amount)
                if expected_error:
                    continue
                if amount == 0:
                    expected_error = "escrow: zero spend"
                elif campaign.last_spent_epoch >= epoch or which in seen:
                    expected_error = "escrow: campaign already spent in epoch"
                elif amount > campaign.balance:
                    expected_error = "escrow: spend above balance"
                seen.add(which)
            if self.paused:
                expected_error = "guard: paused"
            call = world.escrow.spend_batch
            if expected_error:
                expect_revert(expected_error, call, epoch, ids, amounts, sender=world.settler)
                return
            call(epoch, ids, amounts, sender=world.settler)
            self.latest_epoch = epoch
            for which, amount in zip((p[0] for p in picks), amounts, strict=True):
                campaign = world.campaigns[which]
                campaign.spent += amount
                campaign.last_spent_epoch = epoch
                self.funded[campaign.token] += share_of(amount)
                if campaign.token != ZERO:
                    self.treasury_usdc += amount - share_of(amount)

        @rule()
        def toggle_pause(self) -> None:
            if self.paused:
                world.escrow.unpause(sender=world.admin)
            else:
                world.escrow.pause(sender=world.guardian)
            self.paused = not self.paused

        # ---------------------------------------------------------------- payout

        def _head_cumulative(self) -> dict[tuple[str, str], int]:
            for root in self.roots:
                if root.epoch == self.head:
                    return dict(root.cumulative)
            return {}

        @rule(
            weights=st.lists(st.integers(0, 100), min_size=6, max_size=6), insolvent=st.booleans()
        )
        def post_root(self, weights: list[int], insolvent: bool) -> None:
            cumulative = self._head_cumulative()
            for t_index, token in enumerate(tokens):
                allocated = sum(v for (_, t), v in cumulative.items() if t == token)
                free = self.funded[token] - allocated
                token_weights = weights[t_index * 3 : t_index * 3 + 3]
                total_weight = sum(token_weights)
                if not total_weight or not free:
                    continue
                for publisher, weight in zip(world.publishers, token_weights, strict=True):
                    key = (publisher.address, token)
                    cumulative[key] = cumulative.get(key, 0) + free * weight // total_weight
            if insolvent and self.funded[world.usdc.address]:
                key = (world.publishers[0].address, world.usdc.address)
                allocated = sum(v for (_, t), v in cumulative.items() if t == world.usdc.address)
                cumulative[key] = (
                    cumulative.get(key, 0) + self.funded[world.usdc.address] - allocated + 1
                )
            leaves = [Leaf(a, t, v) for (a, t), v in cumulative.items() if v]
            if not leaves:
                return
            tree = PayoutTree(ape.chain.chain_id, world.payout.address, leaves)
            totals = tree.totals()
            epoch = self.posted_epoch + 1
            args = (epoch, tree.root, list(totals), list(totals.values()), "")
            if insolvent and self.funded[world.usdc.address]:
                expect_revert(
                    "payout: root exceeds funding",
                    world.payout.post_root,
                    *args,
                    sender=world.settler,
                )
                return
            previous_head = self.head
            world.payout.post_root(*args, sender=world.settler)
            for token in tokens:  # cumulative totals never decrease along the live chain
                assert world.payout.root_total(epoch, token) >= world.payout.root_total(
                    previous_head, token
                )
            claimable_at = ape.chain.blocks.head.timestamp + CHALLENGE_PERIOD
            self.roots.append(RootModel(epoch, tree, cumulative, claimable_at, self.head))
            self.head = self.posted_epoch = epoch

        @rule()
        def revoke_head(self) -> None:
            head = next((r for r in self.roots if r.epoch == self.head), None)
            if head is None or ape.chain.pending_timestamp >= head.claimable_at:
                return
            world.payout.revoke_root(head.epoch, sender=world.guardian)
            head.revoked = True
            self.head = head.parent

        @rule(who=st.integers(0, 2), token_index=st.integers(0, 1))
        def claim(self, who: int, token_index: int) -> None:
            now = ape.chain.pending_timestamp
            live = [r for r in self.roots if not r.revoked and r.claimable_at <= now]
            if not live:
                return
            root = live[-1]
            account, token = world.publishers[who].address, tokens[token_index]
            cumulative = root.cumulative.get((account, token), 0)
            if not cumulative:
                return
            already = self.claimed.get((account, token), 0)
            args = (root.epoch, account, token, cumulative, root.tree.proof(account, token))
            if cumulative <= already:
                expect_revert(
                    "payout: nothing to claim", world.payout.claim, *args, sender=world.caller
                )
                return
            tx = world.payout.claim(*args, sender=world.caller)
            assert tx.events.filter(world.payout.Claimed)[0].amount == cumulative - already
            self.claimed[(account, token)] = cumulative

        # ---------------------------------------------------------------- invariants

        @invariant()
        def escrow_conserves_every_campaign(self) -> None:
            held = {token: 0 for token in tokens}
            for campaign in world.campaigns:
                ledger = world.escrow.get_ledger(campaign.campaign_id)
                assert (ledger.deposited, ledger.withdrawn, ledger.spent) == (
                    campaign.deposited,
                    campaign.withdrawn,
                    campaign.spent,
                )
                balance = world.escrow.get_balance(campaign.campaign_id, campaign.token)
                assert ledger.deposited == balance + ledger.withdrawn + ledger.spent
                held[campaign.token] += balance
            assert world.usdc.balanceOf(world.escrow) == held[world.usdc.address]
            assert world.escrow.balance == held[ZERO]
            assert world.usdc.balanceOf(world.treasury) == self.treasury_usdc

        @invariant()
        def payout_is_solvent_and_pays_once(self) -> None:
            for token in tokens:
                claimed = sum(v for (_, t), v in self.claimed.items() if t == token)
                assert world.payout.total_funded(token) == self.funded[token]
                assert claimed <= self.funded[token]
                held = world.payout.balance if token == ZERO else world.usdc.balanceOf(world.payout)
                assert held == self.funded[token] - claimed
            for publisher in world.publishers:
                usdc_claimed = self.claimed.get((publisher.address, world.usdc.address), 0)
                eth_claimed = self.claimed.get((publisher.address, ZERO), 0)
                assert world.usdc.balanceOf(publisher) == usdc_claimed
                assert publisher.balance == self.eth_start[publisher.address] + eth_claimed

    return MoneyPaths


def test_money_paths_hold_their_invariants(
    escrow,
    payout,
    usdc,
    admin,
    settler,
    guardian,
    treasury,
    stranger,
    advertiser,
    other_advertiser,
    publisher,
    other_publisher,
    register_campaign,
    mint_usdc,
):
    payout.grantRole(payout.FUNDER_ROLE(), escrow, sender=admin)
    third_publisher = ape.accounts.test_accounts.generate_test_account()
    world = World(
        escrow=escrow,
        payout=payout,
        usdc=usdc,
        settler=settler,
        guardian=guardian,
        admin=admin,
        treasury=treasury,
        caller=stranger,
        advertisers=[advertiser, other_advertiser],
        publishers=[publisher, other_publisher, third_publisher],
        register_campaign=register_campaign,
    )
    for owner, token in (
        (advertiser, usdc.address),
        (other_advertiser, usdc.address),
        (advertiser, ZERO),
    ):
        campaign_id = register_campaign(owner, token=token)
        world.campaigns.append(CampaignModel(campaign_id, owner, token))
    for owner in (advertiser, other_advertiser):
        mint_usdc(owner, 10**9 * USDC)

    run_state_machine_as_test(
        make_machine(world),
        settings=settings(
            **DEPTH,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
