"""A fast generator of realistic, valid on-chain activity for indexer tests and benchmarks.

    report = chain.generate_activity(10_000, seed=1)   # ChainDriver method

It reads the deployment's state from the chain (so it can be called again after other
transactions, a reorg or a revert), then builds blocks: automine is switched off, each block's
transactions are sent one after another with explicit nonces and gas (anvil signs them for its
unlocked dev accounts — no Python signing in the hot loop), and one `evm_mine` with a chosen
timestamp seals the block. A local model of every contract decides which actions are valid
when, so every transaction succeeds; each block's receipts are checked (count, order, status)
and a failure raises `ActivityError` naming the action.

Actions, weighted: publishers register, change payment wallets, get quality scores, domain
verifications and (un)suspensions; advertisers register campaigns (USDC or ETH), change
status, metadata and max spend per epoch, deposit (mint + approve + deposit for USDC),
request, cancel and complete withdrawals; the settler spends ended epochs over many campaigns
(some clipped to their balance or max, a few skipped) and posts cumulative payout roots, one
pending at a time, the guardian sometimes revokes the pending one; anyone claims against the
current root; users pay each other and publishers with EIP-3009 `transferWithAuthorization`
(x402), signed by anvil (`eth_signTypedData_v4`). Time moves 1-12 s per block; when an action
waits for the clock (an epoch to end, a root to mature) the next blocks often jump to that
time, and occasional jumps pass the withdraw delay and challenge period.

Needs an anvil started with `--order fifo` (as `start_anvil` does): transactions of different
senders in one block are mined in the order sent.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eth_utils import keccak, to_checksum_address

from api.settlement.merkle import Leaf, PayoutTree
from tests.support.chain import (
    ADMIN,
    ENDED,
    FIRST_USER,
    GUARDIAN,
    ORACLE,
    SETTLER,
    USDC,
    ZERO_ADDRESS,
)

if TYPE_CHECKING:
    from tests.support.chain import ChainDriver

BPS = 10_000
# holds the previous root's totals when it was not built by this generator
CARRY_ACCOUNT = to_checksum_address(keccak(text="buzzer-activity-carry")[-20:])
MAX_CAMPAIGNS_TRACKED = 500  # older campaigns rest (keeps the start-up read short)

# gas limit per action (measured use x ~1.5; spend_batch and post_root grow with their size)
GAS = {
    "register_publisher": 200_000,
    "update_payment_wallet": 80_000,
    "set_quality_score": 80_000,
    "set_domain_verified": 80_000,
    "set_suspended": 80_000,
    "register_campaign": 250_000,
    "set_max_spend_per_epoch": 100_000,
    "update_campaign_status": 80_000,
    "update_campaign_metadata": 100_000,
    "mint": 100_000,
    "approve": 80_000,
    "deposit": 200_000,
    "request_withdraw": 120_000,
    "cancel_withdraw": 80_000,
    "withdraw": 150_000,
    "spend_batch_base": 350_000,
    "spend_batch_per_campaign": 60_000,
    "post_root": 400_000,
    "revoke_root": 100_000,
    "claim": 200_000,
    "x402_transfer": 150_000,
}

MAX_SPEND_BATCH = 20
MAX_ACTION_GAS = GAS["spend_batch_base"] + MAX_SPEND_BATCH * GAS["spend_batch_per_campaign"]

WEIGHTS = {
    "register_publisher": 3,
    "update_payment_wallet": 1,
    "set_quality_score": 3,
    "set_domain_verified": 2,
    "set_suspended": 1,
    "register_campaign": 4,
    "set_max_spend_per_epoch": 1,
    "update_campaign_status": 2,
    "update_campaign_metadata": 1,
    "mint_usdc": 2,
    "deposit": 8,
    "request_withdraw": 2,
    "cancel_withdraw": 1,
    "withdraw": 2,
    "spend_batch": 2.5,
    "post_root": 1.5,
    "revoke_root": 0.1,
    "claim": 5,
    "x402_transfer": 10,
}


class ActivityError(AssertionError):
    """A generated transaction failed or was not mined as planned."""


@dataclass
class ActivityReport:
    """What one `generate_activity` call produced."""

    events: int  # logs emitted by the deployment's contracts (TestUSDC included)
    transactions: int
    blocks: int
    first_block: int
    last_block: int
    seconds: float
    by_event: Counter[str] = field(default_factory=Counter)  # "PaymentEscrow.Deposited" -> n
    by_action: Counter[str] = field(default_factory=Counter)
    max_gas_used: dict[str, int] = field(default_factory=dict)  # per action, to tune GAS

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else float("inf")


@dataclass
class _Campaign:
    id: int
    advertiser: str
    token: str
    status: int
    deposited: int = 0
    withdrawn: int = 0
    spent: int = 0
    request_amount: int = 0
    request_at: int = 0
    last_spent_epoch: int = 0
    # (effective epoch, max spend per epoch), oldest first, as the registry keeps them
    max_spend: list[tuple[int, int]] = field(default_factory=list)

    @property
    def balance(self) -> int:
        return self.deposited - self.withdrawn - self.spent

    def max_spend_in(self, epoch: int) -> int:
        for effective, amount in reversed(self.max_spend):
            if effective <= epoch:
                return amount
        return 0


class _Bag:
    """A set of campaign ids with O(1) add, discard and random choice."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self._pos: dict[int, int] = {}

    def add(self, item: int) -> None:
        if item not in self._pos:
            self._pos[item] = len(self.items)
            self.items.append(item)

    def discard(self, item: int) -> None:
        index = self._pos.pop(item, None)
        if index is None:
            return
        last = self.items.pop()
        if index < len(self.items):
            self.items[index] = last
            self._pos[last] = index

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _Publisher:
    wallet: str
    suspended: bool


@dataclass
class _Root:
    root_id: int
    totals: dict[str, int]  # token -> cumulative total
    claimable_at: int
    revoked: bool
    tree: PayoutTree | None  # None when not built by this generator (or the empty root 0)


@dataclass
class _Tx:
    action: str
    sender: str
    contract: str
    data: str
    gas: int
    value: int = 0


class ActivityGenerator:
    """See the module docstring. One instance per call; state lives on the chain (plus the
    trees the driver has posted, in `driver.trees`)."""

    def __init__(
        self,
        driver: ChainDriver,
        seed: int = 0,
        *,
        max_txs_per_block: int = 100,
        users: int | None = None,
        weights: dict[str, float] | None = None,
        jump_probability: float = 0.02,
        progress: Callable[[ActivityReport], None] | None = None,
    ) -> None:
        self.d = driver
        self.rng = random.Random(seed)
        self.max_txs_per_block = max_txs_per_block
        self.weights = {**WEIGHTS, **(weights or {})}
        self.jump_probability = jump_probability
        self.progress = progress
        self.usdc = driver.usdc
        self.addr = driver.addresses
        accounts: list[str] = [to_checksum_address(a) for a in driver.rpc.call("eth_accounts")]
        if len(accounts) <= FIRST_USER:
            raise ActivityError(f"anvil has {len(accounts)} dev accounts: users start at 5")
        self.admin, self.settler = accounts[ADMIN], accounts[SETTLER]
        self.oracle, self.guardian = accounts[ORACLE], accounts[GUARDIAN]
        self.users = accounts[FIRST_USER:][:users] if users else accounts[FIRST_USER:]
        self.outside_wallets = [
            to_checksum_address(keccak(text=f"buzzer-wallet-{i}")[-20:]) for i in range(20)
        ]
        self._actions: dict[str, Callable[[], list[_Tx] | None]] = {
            name: getattr(self, f"_{name}") for name in self.weights
        }

    # -- state ------------------------------------------------------------------------------

    def _calls(self, calls: list[tuple[str, str, tuple[Any, ...]]]) -> list[Any]:
        fns = [self.d.abis.function(c, f, len(a)) for c, f, a in calls]
        results = self.d.rpc.batch(
            [
                ("eth_call", [{"to": self.addr[c], "data": fn.encode(a)}, "latest"])
                for (c, _, a), fn in zip(calls, fns, strict=True)
            ]
        )
        return [fn.decode(r) for fn, r in zip(fns, results, strict=True)]

    def _sync(self) -> None:
        """Read everything the model needs from the chain."""
        rpc = self.d.rpc
        head = self.d.block()
        self.timestamp = int(head["timestamp"], 16)
        self.gas_budget = int(head["gasLimit"], 16) // 2  # stay under the base fee target
        if self.gas_budget < MAX_ACTION_GAS:
            raise ActivityError(f"block gas limit {head['gasLimit']} is too small for a batch")
        base_fee = int(head.get("baseFeePerGas", "0x0"), 16)
        self.max_fee = hex(max(3 * base_fee, 10**9) + 10**9)
        senders = [self.admin, self.settler, self.oracle, self.guardian, *self.users]
        counts = rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in senders])
        self.nonces = {a: int(n, 16) for a, n in zip(senders, counts, strict=True)}

        (
            self.fee_bps,
            self.withdraw_delay,
            self.escrow_epoch,
            self.genesis,
            self.epoch_length,
            campaign_count,
            self.challenge_period,
            self.latest_root_id,
            self.current_root_id,
            self.pending_root_id,
            funded_usdc,
            funded_eth,
        ) = self._calls(
            [
                ("PaymentEscrow", "fee_bps", ()),
                ("PaymentEscrow", "withdraw_delay", ()),
                ("PaymentEscrow", "latest_epoch", ()),
                ("CampaignRegistry", "genesis", ()),
                ("CampaignRegistry", "epoch_length", ()),
                ("CampaignRegistry", "campaign_count", ()),
                ("PublisherPayout", "challenge_period", ()),
                ("PublisherPayout", "latest_root_id", ()),
                ("PublisherPayout", "current_root_id", ()),
                ("PublisherPayout", "pending_root_id", ()),
                ("PublisherPayout", "total_funded", (self.usdc,)),
                ("PublisherPayout", "total_funded", (ZERO_ADDRESS,)),
            ]
        )
        core = ("PublisherRegistry", "CampaignRegistry", "PaymentEscrow", "PublisherPayout")
        flags = self._calls([(c, "paused", ()) for c in core])
        paused = [c for c, flag in zip(core, flags, strict=True) if flag]
        if paused:
            raise ActivityError(f"cannot generate activity while {', '.join(paused)} is paused")
        self.funded = {self.usdc: funded_usdc, ZERO_ADDRESS: funded_eth}
        self.wake_at: int | None = None

        publishers = self._calls([("PublisherRegistry", "get_publisher", (u,)) for u in self.users])
        self.publishers = {
            user: _Publisher(to_checksum_address(p[1]), bool(p[5]))
            for user, p in zip(self.users, publishers, strict=True)
            if p[4] != 0
        }
        self.usdc_balance = dict(
            zip(
                self.users,
                self._calls([("TestUSDC", "balanceOf", (u,)) for u in self.users]),
                strict=True,
            )
        )

        first = max(1, campaign_count - MAX_CAMPAIGNS_TRACKED + 1)
        ids = range(first, campaign_count + 1)
        ended = self._ended_epoch(self.timestamp)
        calls: list[tuple[str, str, tuple[Any, ...]]] = []
        for cid in ids:
            calls += [
                ("CampaignRegistry", "get_campaign", (cid,)),
                ("PaymentEscrow", "get_ledger", (cid,)),
                ("PaymentEscrow", "get_withdraw_request", (cid,)),
                ("CampaignRegistry", "max_spend_in_epoch", (cid, ended)),
                ("CampaignRegistry", "max_spend_per_epoch", (cid,)),
            ]
        results = self._calls(calls)
        self.campaign_count = campaign_count
        self.campaigns: dict[int, _Campaign] = {}
        self.open_ids, self.funded_ids, self.request_ids = _Bag(), _Bag(), _Bag()
        users = set(self.users)
        for i, cid in enumerate(ids):
            campaign, ledger, request, max_ended, (max_now, newest, effective) = results[
                5 * i : 5 * i + 5
            ]
            advertiser, token = to_checksum_address(campaign[0]), to_checksum_address(campaign[1])
            if advertiser not in users or token not in self.funded:
                continue  # not ours to drive
            self._track(
                _Campaign(
                    cid,
                    advertiser,
                    token,
                    int(campaign[5]),
                    deposited=ledger[1],
                    withdrawn=ledger[2],
                    spent=ledger[3],
                    request_amount=request[0],
                    request_at=request[1],
                    last_spent_epoch=ledger[4],
                    # spends ask about the last ended epoch or later: that is all the model needs
                    max_spend=[
                        (0, max_ended),
                        (ended + 1, max_now),
                        (max(effective, ended + 1), newest),
                    ],
                )
            )

        # the current and the pending root (the ones claims and the next post depend on)
        self.roots: dict[int, _Root] = {
            0: _Root(0, {self.usdc: 0, ZERO_ADDRESS: 0}, 0, False, None)
        }
        for root_id in {self.current_root_id, self.pending_root_id} - {0}:
            (root, claimable_at), revoked, total_usdc, total_eth = self._calls(
                [
                    ("PublisherPayout", "get_root", (root_id,)),
                    ("PublisherPayout", "revoked", (root_id,)),
                    ("PublisherPayout", "root_total", (root_id, self.usdc)),
                    ("PublisherPayout", "root_total", (root_id, ZERO_ADDRESS)),
                ]
            )
            self.roots[root_id] = _Root(
                root_id,
                {self.usdc: total_usdc, ZERO_ADDRESS: total_eth},
                claimable_at,
                revoked,
                self.d.trees.get(bytes(root)),
            )
        keys = sorted(
            {
                (leaf.account, leaf.token)
                for root in self.roots.values()
                if root.tree is not None
                for leaf in root.tree.leaves
            }
        )
        paid = self._calls([("PublisherPayout", "claimed", key) for key in keys])
        self.claimed: dict[tuple[str, str], int] = dict(zip(keys, paid, strict=True))

    # -- helpers ----------------------------------------------------------------------------

    def _ended_epoch(self, at: int) -> int:
        """The newest spend epoch that has ended at time `at` (0: none yet)."""
        return max(0, (at - self.genesis) // self.epoch_length)

    def _want(self, at: int) -> None:
        """An action waits for the clock to reach `at`: the next blocks may jump there."""
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def _mature_roots(self) -> None:
        """At the new block's time, a pending root past its challenge period is current."""
        pending = self.roots.get(self.pending_root_id)
        if pending is not None and self.pending_root_id and self.block_time >= pending.claimable_at:
            self.current_root_id, self.pending_root_id = self.pending_root_id, 0

    def _tx(
        self, action: str, sender: str, contract: str, fn: str, *args: Any, value: int = 0
    ) -> _Tx:
        data = self.d.abis.calldata(contract, fn, *args)
        return _Tx(action, sender, contract, data, GAS[action], value)

    def _user(self) -> str:
        return self.rng.choice(self.users)

    def _track(self, campaign: _Campaign) -> _Campaign:
        """Record a campaign's changed state in the bags the actions pick from."""
        self.campaigns[campaign.id] = campaign
        for bag, member in (
            (self.open_ids, campaign.status != ENDED),
            (self.funded_ids, campaign.balance > 0),
            (self.request_ids, campaign.request_amount > 0),
        ):
            if member:
                bag.add(campaign.id)
            else:
                bag.discard(campaign.id)
        return campaign

    def _pick_campaign(
        self, bag: _Bag, ok: Callable[[_Campaign], bool] | None = None
    ) -> _Campaign | None:
        if not bag:
            return None
        for _ in range(8):
            campaign = self.campaigns[self.rng.choice(bag.items)]
            if ok is None or ok(campaign):
                return campaign
        assert ok is not None
        matching = [c for i in bag.items if ok(c := self.campaigns[i])]
        return self.rng.choice(matching) if matching else None

    def _ensure_usdc(self, user: str, amount: int) -> list[_Tx]:
        if self.usdc_balance.get(user, 0) >= amount:
            return []
        top_up = amount + self.rng.randint(100, 10_000) * USDC
        self.usdc_balance[user] = self.usdc_balance.get(user, 0) + top_up
        return [self._tx("mint", self.admin, "TestUSDC", "mint", user, top_up)]

    def _random_wallet(self) -> str:
        """A user, or one of a fixed pool of outside wallets (keeps payout trees small)."""
        if self.rng.random() < 0.5:
            return self._user()
        return self.rng.choice(self.outside_wallets)

    # -- actions: each returns the transactions to send, having updated the model, or None --

    def _register_publisher(self) -> list[_Tx] | None:
        free = [u for u in self.users if u not in self.publishers]
        if not free:
            return None
        user = self.rng.choice(free)
        wallet = user if self.rng.random() < 0.7 else self._random_wallet()
        pub_id = f"pub-{self.rng.getrandbits(48):012x}"
        self.publishers[user] = _Publisher(wallet, False)
        return [
            self._tx("register_publisher", user, "PublisherRegistry", "register", pub_id, wallet)
        ]

    def _registered(self) -> str | None:
        return self.rng.choice(list(self.publishers)) if self.publishers else None

    def _update_payment_wallet(self) -> list[_Tx] | None:
        user = self._registered()
        if user is None:
            return None
        wallet = self._random_wallet()
        self.publishers[user].wallet = wallet
        return [
            self._tx(
                "update_payment_wallet",
                user,
                "PublisherRegistry",
                "update_payment_wallet",
                wallet,
            )
        ]

    def _set_quality_score(self) -> list[_Tx] | None:
        user = self._registered()
        if user is None:
            return None
        score = self.rng.randint(0, 100)
        return [
            self._tx(
                "set_quality_score",
                self.oracle,
                "PublisherRegistry",
                "set_quality_score",
                user,
                score,
            )
        ]

    def _set_domain_verified(self) -> list[_Tx] | None:
        user = self._registered()
        if user is None:
            return None
        domain = keccak(text=f"site-{self.rng.getrandbits(32)}.example")
        return [
            self._tx(
                "set_domain_verified",
                self.oracle,
                "PublisherRegistry",
                "set_domain_verified",
                user,
                domain,
            )
        ]

    def _set_suspended(self) -> list[_Tx] | None:
        user = self._registered()
        if user is None:
            return None
        publisher = self.publishers[user]
        publisher.suspended = not publisher.suspended
        return [
            self._tx(
                "set_suspended",
                self.guardian,
                "PublisherRegistry",
                "set_suspended",
                user,
                publisher.suspended,
            )
        ]

    def _register_campaign(self) -> list[_Tx] | None:
        user = self._user()
        token = self.usdc if self.rng.random() < 0.7 else ZERO_ADDRESS
        bid_model = self.rng.randint(0, 1)
        bid = self.rng.randint(1, 5_000) * (USDC // 100 if token == self.usdc else 10**12)
        max_spend = self._random_max_spend(token)
        metadata = self.rng.randbytes(32)
        self.campaign_count += 1
        registered = self._ended_epoch(self.block_time) + 1
        self._track(
            _Campaign(self.campaign_count, user, token, 1, max_spend=[(registered, max_spend)])
        )
        return [
            self._tx(
                "register_campaign",
                user,
                "CampaignRegistry",
                "register",
                token,
                bid_model,
                bid,
                metadata,
                max_spend,
            )
        ]

    def _random_max_spend(self, token: str) -> int:
        return self.rng.randint(20, 2_000) * (USDC if token == self.usdc else 10**15)

    def _set_max_spend_per_epoch(self) -> list[_Tx] | None:
        campaign = self._pick_campaign(self.open_ids)
        if campaign is None:
            return None
        new_max = self._random_max_spend(campaign.token)
        if new_max == campaign.max_spend[-1][1]:
            return None
        effective = self._ended_epoch(self.block_time) + 2  # from the next epoch on
        if campaign.max_spend[-1][0] == effective:
            campaign.max_spend[-1] = (effective, new_max)  # replaces the pending change
        else:
            campaign.max_spend.append((effective, new_max))
        return [
            self._tx(
                "set_max_spend_per_epoch",
                campaign.advertiser,
                "CampaignRegistry",
                "set_max_spend_per_epoch",
                campaign.id,
                new_max,
            )
        ]

    def _update_campaign_status(self) -> list[_Tx] | None:
        campaign = self._pick_campaign(self.open_ids)
        if campaign is None:
            return None
        # pause and resume mostly; end one in ten (ending is final)
        status = ENDED if self.rng.random() < 0.1 else (2 if campaign.status == 1 else 1)
        campaign.status = status
        self._track(campaign)
        return [
            self._tx(
                "update_campaign_status",
                campaign.advertiser,
                "CampaignRegistry",
                "update_status",
                campaign.id,
                status,
            )
        ]

    def _update_campaign_metadata(self) -> list[_Tx] | None:
        campaign = self._pick_campaign(self.open_ids)
        if campaign is None:
            return None
        bid = self.rng.randint(1, 5_000) * (USDC // 100 if campaign.token == self.usdc else 10**12)
        return [
            self._tx(
                "update_campaign_metadata",
                campaign.advertiser,
                "CampaignRegistry",
                "update_metadata",
                campaign.id,
                bid,
                self.rng.randbytes(32),
            )
        ]

    def _mint_usdc(self) -> list[_Tx] | None:
        user = self._user()
        amount = self.rng.randint(1, 5_000) * USDC
        self.usdc_balance[user] = self.usdc_balance.get(user, 0) + amount
        return [self._tx("mint", self.admin, "TestUSDC", "mint", user, amount)]

    def _deposit(self) -> list[_Tx] | None:
        campaign = self._pick_campaign(self.open_ids)
        if campaign is None:
            return None
        user = campaign.advertiser
        campaign_id = campaign.id
        if campaign.token == ZERO_ADDRESS:
            amount = self.rng.randint(1, 100) * 10**15
            campaign.deposited += amount
            self._track(campaign)
            return [
                self._tx(
                    "deposit",
                    user,
                    "PaymentEscrow",
                    "deposit",
                    campaign_id,
                    amount,
                    ZERO_ADDRESS,
                    value=amount,
                )
            ]
        amount = self.rng.randint(10, 2_000) * USDC
        txs = self._ensure_usdc(user, amount)
        self.usdc_balance[user] -= amount
        campaign.deposited += amount
        self._track(campaign)
        escrow = self.addr["PaymentEscrow"]
        return [
            *txs,
            self._tx("approve", user, "TestUSDC", "approve", escrow, amount),
            self._tx("deposit", user, "PaymentEscrow", "deposit", campaign_id, amount, self.usdc),
        ]

    def _request_withdraw(self) -> list[_Tx] | None:
        campaign = self._pick_campaign(self.funded_ids)
        if campaign is None:
            return None
        amount = self.rng.randint(1, campaign.balance)
        campaign.request_amount = amount
        campaign.request_at = self.block_time + self.withdraw_delay
        self._track(campaign)
        return [
            self._tx(
                "request_withdraw",
                campaign.advertiser,
                "PaymentEscrow",
                "request_withdraw",
                campaign.id,
                campaign.token,
                amount,
            )
        ]

    def _cancel_withdraw(self) -> list[_Tx] | None:
        campaign = self._pick_campaign(self.request_ids)
        if campaign is None:
            return None
        campaign.request_amount = campaign.request_at = 0
        self._track(campaign)
        return [
            self._tx(
                "cancel_withdraw",
                campaign.advertiser,
                "PaymentEscrow",
                "cancel_withdraw",
                campaign.id,
                campaign.token,
            )
        ]

    def _withdraw(self) -> list[_Tx] | None:
        now = self.block_time
        campaign = self._pick_campaign(
            self.request_ids, lambda c: now >= c.request_at and c.balance > 0
        )
        if campaign is None:
            return None
        amount = min(campaign.request_amount, campaign.balance)
        campaign.withdrawn += amount
        campaign.request_amount = campaign.request_at = 0
        self._track(campaign)
        if campaign.token == self.usdc:
            user = campaign.advertiser
            self.usdc_balance[user] = self.usdc_balance.get(user, 0) + amount
        return [
            self._tx(
                "withdraw",
                campaign.advertiser,
                "PaymentEscrow",
                "withdraw",
                campaign.id,
                campaign.token,
            )
        ]

    def _spend_batch(self) -> list[_Tx] | None:
        epoch = self._ended_epoch(self.block_time)
        if not self.funded_ids:
            return None
        ready = [
            i
            for i in self.funded_ids.items
            if self.campaigns[i].last_spent_epoch < epoch
            and self.campaigns[i].max_spend_in(epoch) > 0
        ]
        if not ready:
            self._want(self.genesis + (epoch + 1) * self.epoch_length)
            return None
        size = min(len(ready), self.rng.randint(1, MAX_SPEND_BATCH - 1))
        chosen = [self.campaigns[i] for i in self.rng.sample(ready, size)]
        asks = []
        for campaign in chosen:
            limit = min(campaign.balance, campaign.max_spend_in(epoch))
            # mostly within the limit; some above it (clipped)
            factor = self.rng.uniform(1.1, 2.0) if self.rng.random() < 0.15 else None
            asked = (
                int(limit * factor) if factor else max(1, int(limit * self.rng.uniform(0.02, 0.6)))
            )
            asks.append((campaign.id, asked))
        if self.rng.random() < 0.2:  # a skipped item: zero, unknown or repeated
            asks.append(
                self.rng.choice(
                    [(chosen[0].id, 0), (self.campaign_count + 1_000, 1), (chosen[0].id, 1)]
                )
            )
        for campaign_id, asked in asks:
            campaign = self.campaigns.get(campaign_id)
            if campaign is None or asked == 0 or campaign.last_spent_epoch >= epoch:
                continue  # skipped by the escrow
            charged = min(asked, campaign.balance, campaign.max_spend_in(epoch))
            campaign.spent += charged
            campaign.last_spent_epoch = epoch
            self._track(campaign)
            self.funded[campaign.token] += charged * (BPS - self.fee_bps) // BPS
        self.escrow_epoch = epoch
        ids, amounts = [a[0] for a in asks], [a[1] for a in asks]
        data = self.d.abis.calldata("PaymentEscrow", "spend_batch", epoch, ids, amounts)
        gas = GAS["spend_batch_base"] + GAS["spend_batch_per_campaign"] * len(ids)
        return [_Tx("spend_batch", self.settler, "PaymentEscrow", data, gas)]

    def _post_root(self) -> list[_Tx] | None:
        if self.pending_root_id:
            self._want(self.roots[self.pending_root_id].claimable_at)
            return None
        base = self.roots[self.current_root_id]
        new_money = {t: self.funded[t] - base.totals.get(t, 0) for t in self.funded}
        wallets = sorted({p.wallet for p in self.publishers.values()})
        if not wallets or not any(v > 0 for v in new_money.values()):
            return None
        cumulative: dict[tuple[str, str], int] = {}
        if base.tree is not None:
            for leaf in base.tree.leaves:
                cumulative[(leaf.account, leaf.token)] = leaf.cumulative_amount
        else:
            for token, total in base.totals.items():
                if total:
                    cumulative[(CARRY_ACCOUNT, token)] = total
        for token, amount in new_money.items():
            if amount <= 0:
                continue
            recipients = self.rng.sample(wallets, min(len(wallets), self.rng.randint(1, 6)))
            cuts = sorted(self.rng.randint(0, amount) for _ in recipients[1:])
            shares = [b - a for a, b in zip([0, *cuts], [*cuts, amount], strict=True)]
            for wallet, share in zip(recipients, shares, strict=True):
                key = (wallet, token)
                cumulative[key] = cumulative.get(key, 0) + share
        tree = PayoutTree(
            self.d.chain_id,
            self.addr["PublisherPayout"],
            [Leaf(a, t, v) for (a, t), v in cumulative.items()],
        )
        totals = tree.totals()
        root_id = self.latest_root_id + 1
        self.roots[root_id] = _Root(
            root_id,
            {t: totals.get(t, base.totals.get(t, 0)) for t in self.funded},
            self.block_time + self.challenge_period,
            False,
            tree,
        )
        self.latest_root_id = self.pending_root_id = root_id
        self.d.trees[tree.root] = tree
        return [
            self._tx(
                "post_root",
                self.settler,
                "PublisherPayout",
                "post_root",
                root_id,
                tree.root,
                list(totals),
                list(totals.values()),
                f"ipfs://buzzer/root-{root_id}.json",
            )
        ]

    def _revoke_root(self) -> list[_Tx] | None:
        if not self.pending_root_id:
            return None
        pending = self.roots[self.pending_root_id]
        pending.revoked = True
        self.pending_root_id = 0
        return [
            self._tx(
                "revoke_root", self.guardian, "PublisherPayout", "revoke_root", pending.root_id
            )
        ]

    def _claim(self) -> list[_Tx] | None:
        root = self.roots[self.current_root_id]
        if root.tree is None:
            if self.pending_root_id:
                self._want(self.roots[self.pending_root_id].claimable_at)
            return None
        open_leaves = [
            leaf
            for leaf in root.tree.leaves
            if leaf.account != CARRY_ACCOUNT
            and leaf.cumulative_amount > self.claimed.get((leaf.account, leaf.token), 0)
        ]
        if not open_leaves:
            return None
        leaf = self.rng.choice(open_leaves)
        paid = leaf.cumulative_amount - self.claimed.get((leaf.account, leaf.token), 0)
        self.claimed[(leaf.account, leaf.token)] = leaf.cumulative_amount
        if leaf.token == self.usdc and leaf.account in self.usdc_balance:
            self.usdc_balance[leaf.account] += paid
        sender = leaf.account if leaf.account in self.nonces else self._user()
        return [
            self._tx(
                "claim",
                sender,
                "PublisherPayout",
                "claim",
                leaf.account,
                leaf.token,
                leaf.cumulative_amount,
                root.tree.proof(leaf.account, leaf.token),
            )
        ]

    def _x402_transfer(self) -> list[_Tx] | None:
        payer = self._user()
        wallets = [p.wallet for p in self.publishers.values() if not p.suspended]
        pay_to = self.rng.choice(wallets) if wallets else self._user()
        if pay_to == payer:
            pay_to = self.admin
        amount = self.rng.randint(1, 5_000) * (USDC // 1_000)
        txs = self._ensure_usdc(payer, amount)
        self.usdc_balance[payer] -= amount
        if pay_to in self.usdc_balance:
            self.usdc_balance[pay_to] += amount
        nonce = self.rng.randbytes(32)
        valid_before = self.block_time + 3_600
        typed = self.d.transfer_authorization(
            payer, pay_to, amount, nonce=nonce, valid_after=0, valid_before=valid_before
        )
        signature = bytes.fromhex(
            self.d.rpc.call("eth_signTypedData_v4", payer, typed).removeprefix("0x")
        )
        v = signature[64] if signature[64] >= 27 else signature[64] + 27
        return [
            *txs,
            self._tx(
                "x402_transfer",
                self.admin,
                "TestUSDC",
                "transferWithAuthorization",
                payer,
                pay_to,
                amount,
                0,
                valid_before,
                nonce,
                v,
                signature[:32],
                signature[32:64],
            ),
        ]

    # -- the loop ---------------------------------------------------------------------------

    def _next_action(self) -> list[_Tx]:
        names = list(self.weights)
        weights = [self.weights[n] for n in names]
        for _ in range(20):
            name = self.rng.choices(names, weights)[0]
            txs = self._actions[name]()
            if txs:
                return txs
        mint = self._mint_usdc()
        assert mint is not None
        return mint

    def _send_block(self, txs: list[_Tx]) -> list[str]:
        hashes = []
        for tx in txs:
            nonce = self.nonces[tx.sender]
            self.nonces[tx.sender] = nonce + 1
            request = {
                "from": tx.sender,
                "to": self.addr[tx.contract],
                "data": tx.data,
                "value": hex(tx.value),
                "gas": hex(tx.gas),
                "nonce": hex(nonce),
                "maxFeePerGas": self.max_fee,
                "maxPriorityFeePerGas": "0x1",
            }
            try:
                hashes.append(self.d.rpc.call("eth_sendTransaction", request))
            except Exception as exc:
                raise ActivityError(f"sending {tx.action} from {tx.sender} failed: {exc}") from exc
        return hashes

    def run(self, n_events: int) -> ActivityReport:
        started = time.perf_counter()
        rpc = self.d.rpc
        automine = rpc.call("anvil_getAutomine")
        rpc.call("evm_setAutomine", False)
        report = ActivityReport(0, 0, 0, 0, 0, 0.0)
        ok = False
        try:
            self._sync()
            while report.events < n_events:
                step = self.rng.choice((1, 2, 2, 2, 2, 3, 5, 12))
                if self.rng.random() < self.jump_probability:
                    step += max(self.withdraw_delay, self.challenge_period) + 1
                self.block_time = self.timestamp + step
                if self.wake_at is not None and (
                    self.wake_at <= self.block_time or self.rng.random() < 0.5
                ):
                    self.block_time = max(self.block_time, self.wake_at)
                    self.wake_at = None
                self._mature_roots()
                txs: list[_Tx] = []
                gas = 0
                target = self.rng.randint(1, self.max_txs_per_block)
                # every action fits in what is left, so the model never runs ahead of a block
                while len(txs) < target and gas + MAX_ACTION_GAS <= self.gas_budget:
                    action = self._next_action()
                    txs += action
                    gas += sum(t.gas for t in action)
                hashes = self._send_block(txs)
                rpc.call("evm_mine", self.block_time)
                self.timestamp = self.block_time
                self._check_block(txs, hashes, report)
                if self.progress is not None:
                    self.progress(report)
            ok = True
        finally:
            if not ok:
                rpc.call("anvil_dropAllTransactions")
            rpc.call("evm_setAutomine", bool(automine))
        report.seconds = time.perf_counter() - started
        return report

    def _check_block(self, txs: list[_Tx], hashes: list[str], report: ActivityReport) -> None:
        receipts = self.d.rpc.call("eth_getBlockReceipts", "latest")
        number = int(receipts[0]["blockNumber"], 16) if receipts else None
        got = [r["transactionHash"] for r in receipts]
        if got != hashes:
            raise ActivityError(
                f"block {number} holds {len(got)} transactions, {len(hashes)} were sent "
                "(or in another order): is anvil running with --order fifo?"
            )
        for tx, receipt in zip(txs, receipts, strict=True):
            if receipt["status"] != "0x1":
                raise ActivityError(
                    f"{tx.action} from {tx.sender} reverted in block {number} "
                    f"(tx {receipt['transactionHash']}, gas used {int(receipt['gasUsed'], 16)} "
                    f"of {tx.gas})"
                )
            report.by_action[tx.action] += 1
            used = int(receipt["gasUsed"], 16)
            if used > report.max_gas_used.get(tx.action, 0):
                report.max_gas_used[tx.action] = used
            for log in receipt["logs"]:
                key = self.d.abis.event_key(log)
                if key is not None:
                    report.by_event[key] += 1
                    report.events += 1
        assert number is not None
        if report.blocks == 0:
            report.first_block = number
        report.last_block = number
        report.blocks += 1
        report.transactions += len(txs)
