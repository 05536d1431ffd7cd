"""Stateful property test of the money paths: random sequences of deposits, withdraw
requests, withdrawals, max-per-epoch changes, spends over time-window epochs (clipped and
skipped), pauses of either contract, roots (with lowered leaves and wallet changes),
revokes (also while paused) and claims against the current root, checked after every step
against a plain-Python model of what each contract must hold.

Invariants: escrow conservation (deposited = balance + withdrawn + spent, per campaign and
token; the escrow holds exactly the sum of balances); per campaign and epoch, spent ≤ the max
in force; payout solvency (total_claimed ≤ current root total ≤ funded; the payout holds
funded − claimed); nobody is paid more than the highest leaf they had in a root that became
current; each publisher's wallet holds exactly what it claimed.

`BUZZER_PROPERTY_DEPTH=deep` runs many more and longer sequences than the default.
"""

from __future__ import annotations

import os
import sys
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
from tests.contracts.conftest import CHALLENGE_PERIOD, FEE_BPS, USDC, ZERO

DEPTH = {
    "default": {"max_examples": 10, "stateful_step_count": 30},
    "deep": {"max_examples": 375, "stateful_step_count": 100},
}[os.environ.get("BUZZER_PROPERTY_DEPTH", "default")]

ETH_UNIT = 10**9  # ETH campaigns move gwei-sized amounts so balances stay readable
MAX_UNLIMITED = 2**128 - 1


@dataclass
class CampaignModel:
    campaign_id: int
    advertiser: object
    token: str
    unit: int
    deposited: int = 0
    withdrawn: int = 0
    spent: int = 0
    last_spent_epoch: int = 0
    request_amount: int = 0
    request_at: int = 0
    request_paused_total: int = 0
    # (effective epoch, max) in order; the last one whose epoch ≤ e is in force in e
    limits: list[tuple[int, int]] = field(default_factory=list)
    spent_in_epoch: dict[int, int] = field(default_factory=dict)

    @property
    def balance(self) -> int:
        return self.deposited - self.withdrawn - self.spent

    def max_in(self, epoch: int) -> int:
        in_force = 0
        for effective, limit in self.limits:
            if effective <= epoch:
                in_force = limit
        return in_force


@dataclass
class RootModel:
    root_id: int
    tree: PayoutTree
    cumulative: dict[tuple[str, str], int]
    totals: dict[str, int]
    claimable_at: int
    revoked: bool = False


@dataclass
class World:
    registry: object
    escrow: object
    payout: object
    usdc: object
    settler: object
    guardian: object
    admin: object
    treasury: object
    caller: object
    publishers: list
    campaigns: list[CampaignModel] = field(default_factory=list)


def share_of(amount: int) -> int:
    return amount * (10_000 - FEE_BPS) // 10_000


def expect_revert(reason: str, call, *args, **kwargs) -> None:
    with ape.reverts(reason):
        call(*args, **kwargs)


def make_machine(world: World):
    progress = {"sequences": 0}
    tokens = [world.usdc.address, ZERO]
    genesis = world.registry.genesis()
    epoch_length = world.registry.epoch_length()
    delay = world.escrow.withdraw_delay()

    def epoch_at(timestamp: int) -> int:
        return (timestamp - genesis) // epoch_length + 1

    class MoneyPaths(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.snapshot = ape.chain.snapshot()
            registered_epoch = epoch_at(ape.chain.blocks.head.timestamp)
            for campaign in world.campaigns:  # the chain starts afresh, so does the model
                campaign.deposited = campaign.withdrawn = campaign.spent = 0
                campaign.last_spent_epoch = campaign.request_amount = campaign.request_at = 0
                campaign.request_paused_total = 0
                campaign.limits = [
                    (
                        registered_epoch,
                        world.registry.max_spend_in_epoch(campaign.campaign_id, registered_epoch),
                    )
                ]
                campaign.spent_in_epoch = {}
            self.escrow_paused = False
            self.escrow_paused_total = 0
            self.payout_paused = False
            self.payout_paused_at = 0
            self.latest_epoch = 0
            self.funded = {token: 0 for token in tokens}
            self.claimed: dict[tuple[str, str], int] = {}
            self.roots: list[RootModel] = []
            self.highest_current_leaf: dict[tuple[str, str], int] = {}
            self.eth_start = {p.address: p.balance for p in world.publishers}
            self.treasury_usdc = world.usdc.balanceOf(world.treasury)

        def teardown(self) -> None:
            if hasattr(self, "snapshot"):
                ape.chain.restore(self.snapshot)
            progress["sequences"] += 1
            if DEPTH["max_examples"] > 50 and progress["sequences"] % 5 == 0:
                # the deep setting runs for a long time: show how far it got
                print(f"property sequences run: {progress['sequences']}", file=sys.stderr)

        # ---------------------------------------------------------------- clocks

        def _payout_now(self) -> int:
            return self.payout_paused_at if self.payout_paused else ape.chain.pending_timestamp

        def _current(self) -> RootModel | None:
            now = self._payout_now()
            live = [r for r in self.roots if not r.revoked and r.claimable_at <= now]
            return live[-1] if live else None

        def _pending(self) -> RootModel | None:
            if self.roots and not self.roots[-1].revoked:
                root = self.roots[-1]
                if root.claimable_at > self._payout_now():
                    return root
            return None

        @rule(seconds=st.integers(1, 2 * 86_400))
        def advance_time(self, seconds: int) -> None:
            ape.chain.mine(timestamp=ape.chain.pending_timestamp + seconds)

        # ---------------------------------------------------------------- escrow

        @rule(which=st.integers(0, 2), amount=st.integers(1, 5_000))
        def deposit(self, which: int, amount: int) -> None:
            campaign = world.campaigns[which]
            value = amount * campaign.unit
            if campaign.token == ZERO:
                call = lambda: world.escrow.deposit(  # noqa: E731
                    campaign.campaign_id, value, ZERO, value=value, sender=campaign.advertiser
                )
            else:
                world.usdc.approve(world.escrow, value, sender=campaign.advertiser)
                call = lambda: world.escrow.deposit(  # noqa: E731
                    campaign.campaign_id, value, campaign.token, sender=campaign.advertiser
                )
            if self.escrow_paused:
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
            if self.escrow_paused:
                expect_revert("guard: paused", call, *args, sender=campaign.advertiser)
            elif amount == 0:
                expect_revert("escrow: zero amount", call, *args, sender=campaign.advertiser)
            elif amount > campaign.balance:
                expect_revert(
                    "escrow: amount above balance", call, *args, sender=campaign.advertiser
                )
            else:
                tx = call(*args, sender=campaign.advertiser)
                campaign.request_amount = amount
                campaign.request_at = tx.timestamp + delay
                campaign.request_paused_total = self.escrow_paused_total

        @rule(which=st.integers(0, 2))
        def withdraw(self, which: int) -> None:
            campaign = world.campaigns[which]
            args = (campaign.campaign_id, campaign.token)
            now = ape.chain.pending_timestamp
            available_at = campaign.request_at + (
                self.escrow_paused_total - campaign.request_paused_total
            )
            payable = min(campaign.request_amount, campaign.balance)
            call = world.escrow.withdraw
            if self.escrow_paused:
                expect_revert("guard: paused", call, *args, sender=campaign.advertiser)
            elif campaign.request_amount == 0:
                expect_revert(
                    "escrow: no pending withdraw", call, *args, sender=campaign.advertiser
                )
            elif now < available_at:
                expect_revert(
                    "escrow: withdraw delay not over", call, *args, sender=campaign.advertiser
                )
            elif payable == 0:
                expect_revert(
                    "escrow: nothing to withdraw", call, *args, sender=campaign.advertiser
                )
            else:
                tx = call(*args, sender=campaign.advertiser)
                assert tx.events.filter(world.escrow.Withdrawn)[0].amount == payable
                campaign.withdrawn += payable
                campaign.request_amount = 0

        @rule(which=st.integers(0, 2), amount=st.integers(0, 3_000))
        def set_max(self, which: int, amount: int) -> None:
            campaign = world.campaigns[which]
            new_max = amount * campaign.unit
            call = world.registry.set_max_spend_per_epoch
            if new_max == 0:
                expect_revert(
                    "campaigns: zero max spend",
                    call,
                    campaign.campaign_id,
                    0,
                    sender=campaign.advertiser,
                )
                return
            if new_max == campaign.limits[-1][1]:  # the newest max again: a no-op, refused
                expect_revert(
                    "campaigns: max spend unchanged",
                    call,
                    campaign.campaign_id,
                    new_max,
                    sender=campaign.advertiser,
                )
                return
            tx = call(campaign.campaign_id, new_max, sender=campaign.advertiser)
            effective = epoch_at(tx.timestamp) + 1
            campaign.limits = [lim for lim in campaign.limits if lim[0] < effective]
            campaign.limits.append((effective, new_max))

        @rule(
            picks=st.lists(
                st.tuples(st.integers(0, 2), st.integers(0, 110)), min_size=1, max_size=3
            ),
            step=st.integers(-1, 2),
        )
        def spend(self, picks: list[tuple[int, int]], step: int) -> None:
            """A settler (honest or with a stolen key) spends an epoch near the latest."""
            now = ape.chain.pending_timestamp
            epoch = max(1, self.latest_epoch + step)
            ids = [world.campaigns[which].campaign_id for which, _ in picks]
            amounts = []
            for which, percent in picks:
                campaign = world.campaigns[which]
                amounts.append(
                    campaign.balance * percent // 100 if percent <= 100 else campaign.balance + 1
                )
            call = world.escrow.spend_batch
            if self.escrow_paused:
                expect_revert("guard: paused", call, epoch, ids, amounts, sender=world.settler)
                return
            if now < genesis + epoch * epoch_length:
                expect_revert(
                    "escrow: epoch not ended", call, epoch, ids, amounts, sender=world.settler
                )
                return
            if epoch < self.latest_epoch:
                expect_revert(
                    "escrow: epoch already closed", call, epoch, ids, amounts, sender=world.settler
                )
                return
            tx = call(epoch, ids, amounts, sender=world.settler)
            self.latest_epoch = epoch
            spent_events = iter(tx.events.filter(world.escrow.Spent))
            skipped = iter(tx.events.filter(world.escrow.SpendSkipped))
            for (which, _), asked in zip(picks, amounts, strict=True):
                campaign = world.campaigns[which]
                charged = min(asked, campaign.balance, campaign.max_in(epoch))
                if asked == 0 or campaign.last_spent_epoch >= epoch or charged == 0:
                    event = next(skipped)
                    assert (event.campaign_id, event.asked) == (campaign.campaign_id, asked)
                    continue
                event = next(spent_events)
                assert (event.campaign_id, event.asked, event.charged) == (
                    campaign.campaign_id,
                    asked,
                    charged,
                )
                campaign.spent += charged
                campaign.last_spent_epoch = epoch
                campaign.spent_in_epoch[epoch] = campaign.spent_in_epoch.get(epoch, 0) + charged
                self.funded[campaign.token] += share_of(charged)
                if campaign.token != ZERO:
                    self.treasury_usdc += charged - share_of(charged)
            assert next(spent_events, None) is None and next(skipped, None) is None

        @rule()
        def toggle_escrow_pause(self) -> None:
            if self.escrow_paused:
                tx = world.escrow.unpause(sender=world.admin)
                self.escrow_paused_total += tx.events.filter(world.escrow.PausedTimeAdded)[
                    0
                ].duration
            else:
                world.escrow.pause(sender=world.guardian)
            self.escrow_paused = not self.escrow_paused

        # ---------------------------------------------------------------- payout

        @rule(
            weights=st.lists(st.integers(0, 100), min_size=6, max_size=6),
            mistake=st.sampled_from(["none", "insolvent", "lower", "move_wallet", "shrink"]),
        )
        def post_root(self, weights: list[int], mistake: str) -> None:
            """The settler posts the next root: honest, or lowering someone's leaf, moving a
            publisher's earnings to a new wallet, shrinking the total, or promising too much."""
            current = self._current()
            base = dict(current.cumulative) if current else {}
            base_totals = dict(current.totals) if current else {t: 0 for t in tokens}
            cumulative = dict(base)
            for t_index, token in enumerate(tokens):
                allocated = sum(v for (_, t), v in cumulative.items() if t == token)
                free = self.funded[token] - allocated
                token_weights = weights[t_index * 3 : t_index * 3 + 3]
                if not sum(token_weights) or free <= 0:
                    continue
                for publisher, weight in zip(world.publishers, token_weights, strict=True):
                    key = (publisher.address, token)
                    cumulative[key] = cumulative.get(key, 0) + free * weight // sum(token_weights)
            usdc = world.usdc.address
            first = (world.publishers[0].address, usdc)
            second = (world.publishers[1].address, usdc)
            if mistake == "lower" and cumulative.get(first):
                moved = cumulative[first] // 2 + 1
                cumulative[first] -= moved
                cumulative[second] = cumulative.get(second, 0) + moved
            elif mistake == "move_wallet" and cumulative.get(first):
                cumulative[second] = cumulative.get(second, 0) + cumulative.pop(first)
            elif mistake == "shrink" and cumulative.get(first):
                cumulative[first] -= 1
            elif mistake == "insolvent":
                allocated = sum(v for (_, t), v in cumulative.items() if t == usdc)
                cumulative[first] = cumulative.get(first, 0) + self.funded[usdc] - allocated + 1
            leaves = [Leaf(a, t, v) for (a, t), v in cumulative.items() if v]
            if not leaves:
                return
            tree = PayoutTree(ape.chain.chain_id, world.payout.address, leaves)
            totals = {t: 0 for t in tokens} | tree.totals()
            root_id = len(self.roots) + 1
            args = (root_id, tree.root, list(totals), list(totals.values()), "")
            expected = None
            if self.payout_paused:
                expected = "guard: paused"
            elif self._pending() is not None:
                expected = "payout: root pending"
            else:
                for token in (ZERO, usdc):  # the payout's registration order
                    claimed = sum(v for (_, t), v in self.claimed.items() if t == token)
                    if totals[token] < base_totals.get(token, 0):
                        expected = expected or "payout: cumulative total decreased"
                    elif totals[token] < claimed:
                        expected = expected or "payout: total below claimed"
                    elif totals[token] > self.funded[token]:
                        expected = expected or "payout: root exceeds funding"
            if expected:
                expect_revert(expected, world.payout.post_root, *args, sender=world.settler)
                return
            tx = world.payout.post_root(*args, sender=world.settler)
            self.roots.append(
                RootModel(root_id, tree, cumulative, totals, tx.timestamp + CHALLENGE_PERIOD)
            )

        @rule()
        def revoke_pending(self) -> None:
            pending = self._pending()
            if pending is None:
                if self.roots:
                    expect_revert(
                        "payout: root not pending",
                        world.payout.revoke_root,
                        self.roots[-1].root_id,
                        sender=world.guardian,
                    )
                return
            world.payout.revoke_root(pending.root_id, sender=world.guardian)
            pending.revoked = True

        @rule()
        def toggle_payout_pause(self) -> None:
            if self.payout_paused:
                pending = self._pending()
                tx = world.payout.unpause(sender=world.admin)
                duration = tx.events.filter(world.payout.PausedTimeAdded)[0].duration
                if pending is not None:
                    pending.claimable_at += duration
                self.payout_paused = False
            else:
                self._note_current()
                tx = world.payout.pause(sender=world.guardian)
                self.payout_paused_at = tx.timestamp
                self.payout_paused = True

        def _note_current(self) -> None:
            current = self._current()
            if current is None:
                return
            for key, value in current.cumulative.items():
                self.highest_current_leaf[key] = max(self.highest_current_leaf.get(key, 0), value)

        @rule(who=st.integers(0, 2), token_index=st.integers(0, 1), stale=st.booleans())
        def claim(self, who: int, token_index: int, stale: bool) -> None:
            """A publisher claims against the current root, or with an older root's proof."""
            self._note_current()
            current = self._current()
            account, token = world.publishers[who].address, tokens[token_index]
            source = current
            if stale:
                older = [
                    r for r in self.roots if r is not current and (account, token) in r.cumulative
                ]
                source = older[-1] if older else None
            if source is None or (account, token) not in source.cumulative:
                return
            cumulative = source.cumulative[(account, token)]
            args = (account, token, cumulative, source.tree.proof(account, token))
            already = self.claimed.get((account, token), 0)
            total_claimed = sum(v for (_, t), v in self.claimed.items() if t == token)
            call = world.payout.claim
            if self.payout_paused:
                expect_revert("guard: paused", call, *args, sender=world.caller)
            elif current is None:
                expect_revert("payout: no current root", call, *args, sender=world.caller)
            elif source.tree.root != current.tree.root:
                expect_revert("payout: invalid proof", call, *args, sender=world.caller)
            elif cumulative <= already:
                expect_revert("payout: nothing to claim", call, *args, sender=world.caller)
            elif total_claimed + cumulative - already > current.totals[token]:
                expect_revert("payout: claims exceed root total", call, *args, sender=world.caller)
            else:
                tx = call(*args, sender=world.caller)
                event = tx.events.filter(world.payout.Claimed)[0]
                assert (event.root_id, event.amount) == (current.root_id, cumulative - already)
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
                for epoch, spent in campaign.spent_in_epoch.items():
                    assert spent <= campaign.max_in(epoch)
                    assert world.registry.max_spend_in_epoch(campaign.campaign_id, epoch) == (
                        campaign.max_in(epoch)
                    )
            assert world.usdc.balanceOf(world.escrow) == held[world.usdc.address]
            assert world.escrow.balance == held[ZERO]
            assert world.usdc.balanceOf(world.treasury) == self.treasury_usdc

        @invariant()
        def payout_is_solvent_and_pays_once(self) -> None:
            current_id = world.payout.current_root_id()
            for token in tokens:
                claimed = sum(v for (_, t), v in self.claimed.items() if t == token)
                assert world.payout.total_funded(token) == self.funded[token]
                assert world.payout.total_claimed(token) == claimed
                assert claimed <= world.payout.root_total(current_id, token) <= self.funded[token]
                held = world.payout.balance if token == ZERO else world.usdc.balanceOf(world.payout)
                assert held == self.funded[token] - claimed
            for publisher in world.publishers:
                usdc_claimed = self.claimed.get((publisher.address, world.usdc.address), 0)
                eth_claimed = self.claimed.get((publisher.address, ZERO), 0)
                assert world.usdc.balanceOf(publisher) == usdc_claimed
                assert publisher.balance == self.eth_start[publisher.address] + eth_claimed
            for key, paid in self.claimed.items():
                assert paid <= self.highest_current_leaf.get(key, 0)

        @invariant()
        def root_ids_follow_the_model(self) -> None:
            assert world.payout.latest_root_id() == len(self.roots)
            current = self._current()
            # the view runs at the head block, the model at the next one: a root maturing
            # exactly between the two may be seen either way
            head = ape.chain.blocks.head.timestamp
            at_head = [r for r in self.roots if not r.revoked and r.claimable_at <= head]
            ids = {current.root_id if current else 0}
            if not self.payout_paused:
                ids.add(at_head[-1].root_id if at_head else 0)
            assert world.payout.current_root_id() in ids

    return MoneyPaths


def test_money_paths_hold_their_invariants(
    campaign_registry,
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
    third_publisher = ape.accounts.test_accounts.generate_test_account()
    world = World(
        registry=campaign_registry,
        escrow=escrow,
        payout=payout,
        usdc=usdc,
        settler=settler,
        guardian=guardian,
        admin=admin,
        treasury=treasury,
        caller=stranger,
        publishers=[publisher, other_publisher, third_publisher],
    )
    for owner, token, unit in (
        (advertiser, usdc.address, USDC),
        (other_advertiser, usdc.address, USDC),
        (advertiser, ZERO, ETH_UNIT),
    ):
        campaign_id = register_campaign(owner, token=token, max_spend=1_500 * unit)
        world.campaigns.append(CampaignModel(campaign_id, owner, token, unit))
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
