"""Settlement: ended epochs move money out of escrow, and roots of cumulative earnings are
posted for publishers to claim.

    report = settle(settings)                      # every step that can run now, then return
    report = settle(settings, steps=SPEND_STEPS)   # the escrow settler's process only
    report = settle(settings, steps=POST_STEPS)    # the payout settler's process only
    status(settings)                               # what each epoch and root is waiting for

Each ended epoch is a state machine persisted in `settlement_epochs` (see `models.py`):

1. freeze: its billable events (verified, of the campaign's bid kind, older than the IVT hold),
   grouped by campaign and payment wallet (the one registered at the epoch's end), read from
   chain facts at or below the indexer's finalized block;
2. charge: per campaign Σ serve-time bids, one integer division, capped by free balance and
   the max in force in that epoch;
3. spend: `spend_batch` with the escrow settler key, each batch signed and stored before it is
   sent; once its `Spent` events are final, what was charged (after the escrow's clipping) is
   recorded, the rest written off, and the billed spend leaves the serving budget;
4. allocate: each campaign's publisher share to the wallets whose events it paid for, by
   largest remainder.

Then, when no root is pending: build cumulative leaves over every allocated epoch since the
last root, the tree, proofs and the public artefact, and post the root with the payout settler
key. A step done on-chain is recognised from the indexer's tables and never repeated; a run
that stops anywhere resumes at the step that did not commit. A root that was revoked stops
building and posting until an operator decides (`python -m api.settlement release-root`)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from eth_utils import keccak, to_checksum_address
from sqlalchemy import Connection, Engine, text

from api.core.chain import call_data, deployment
from api.core.db import make_engine
from api.core.settings import Settings
from api.settlement import money
from api.settlement.schemas import CampaignSpend
from api.tracking.stream import Keys
from chain.rpc import Rpc
from migrations import libpq_url

log = logging.getLogger("api.settlement")

FREEZE, CHARGE, SPEND, ALLOCATE = "freeze", "charge", "spend", "allocate"
BUILD, POST, PUSH = "build", "post", "push"
SPEND_STEPS = (FREEZE, CHARGE, SPEND, ALLOCATE)
POST_STEPS = (BUILD, POST, PUSH)
ALL_STEPS = SPEND_STEPS + POST_STEPS

# epoch states, in order; "empty": ended with nothing to charge
FROZEN, CHARGED, SPENT, ALLOCATED, EMPTY = "frozen", "charged", "spent", "allocated", "empty"
# root states
BUILT, POSTED, OPERATOR_NEEDED, RELEASED = "built", "posted", "operator_needed", "released"

MAX_BATCH = 256  # PaymentEscrow.MAX_BATCH
MAX_BATCH_TOKENS = 8  # PaymentEscrow.MAX_BATCH_TOKENS
MAX_CLAIMS = 128  # PublisherPayout.MAX_CLAIMS
PUSH_ATTEMPTS = 3  # tries per leaf and root before a push waits for the next root
PUSHES_PER_RUN = 8
RELEASED_MARK_TTL = 90 * 86_400

# KEYS: the campaign's settled mark for the epoch, its billed. ARGV: the billed amount settled.
# Takes settled spend out of `billed` once per (campaign, epoch), never below zero.
RELEASE_BILLED = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return -1 end
local billed = tonumber(redis.call('GET', KEYS[2]) or '0')
local amount = math.min(tonumber(ARGV[1]), billed)
if amount > 0 then redis.call('DECRBY', KEYS[2], amount) end
return amount
"""


class SettlementError(Exception):
    """Settlement cannot go on without a person: the message says what to look at."""


@dataclass
class Report:
    """What one run did and what it is waiting for."""

    done: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    busy: bool = False

    def add(self, message: str) -> None:
        log.info("%s", message)
        self.done.append(message)

    def wait(self, message: str) -> None:
        log.info("waiting: %s", message)
        self.waiting.append(message)


@dataclass(frozen=True)
class EpochClock:
    genesis: int
    length: int

    def bounds(self, epoch: int) -> tuple[int, int]:
        """[start, end) of epoch e ≥ 1 in unix seconds."""
        start = self.genesis + (epoch - 1) * self.length
        return start, start + self.length

    def epoch_at(self, timestamp: float) -> int:
        if timestamp < self.genesis:
            return 0
        return int(timestamp - self.genesis) // self.length + 1

    def last_ended(self, now: float) -> int:
        """The newest epoch the escrow accepts a spend for at chain time `now`."""
        return max(0, int(now - self.genesis) // self.length)


class Settlement:
    """One run's view of the world: the database, the chain (through the RPC and the
    indexer's tables), Redis and the two settler keys."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        rpc: Rpc | None = None,
        wait_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.chain_id = settings.chain_id
        self.engine = engine or make_engine(settings.database_url)
        self.rpc = rpc or Rpc(settings.rpc_url)
        self._redis: Any = None
        self._sender_cache: dict[str, Any] = {}
        self.wait_seconds = wait_seconds
        self.deployment = deployment(self.chain_id)

    # --- the world ----------------------------------------------------------------------

    def redis(self) -> Any:
        if self._redis is None:
            from api.core.redis import connect

            self._redis = connect(self.settings.redis_url)
        return self._redis

    def sender(self, which: str) -> Any:
        if which not in self._sender_cache:
            from chain.sender import Sender

            key = (
                self.settings.escrow_settler_private_key
                if which == "escrow"
                else self.settings.payout_settler_private_key
            )
            if not key:
                name = "ESCROW" if which == "escrow" else "PAYOUT"
                raise SettlementError(
                    f"no {which} settler key is configured (BUZZER_{name}_SETTLER_PRIVATE_KEY)"
                )
            self._sender_cache[which] = Sender(
                self.rpc, key, self.chain_id, receipt_timeout=max(30.0, self.wait_seconds)
            )
        return self._sender_cache[which]

    def clock(self, conn: Connection) -> EpochClock:
        row = conn.execute(
            text(
                "SELECT args->>'genesis' AS genesis, args->>'epoch_length' AS length"
                " FROM chain_config WHERE chain_id = :chain AND contract = 'CampaignRegistry'"
                " AND event = 'EpochClockSet'"
            ),
            {"chain": self.chain_id},
        ).first()
        if row is None:
            raise SettlementError("the epoch clock is not indexed yet: is the indexer running?")
        return EpochClock(int(row.genesis), int(row.length))

    def finalized(self, conn: Connection) -> tuple[int, int]:
        """The indexer's finalized block and its timestamp: settlement reads nothing newer."""
        row = conn.execute(
            text(
                "SELECT finalized_block, block_number, block_timestamp FROM indexer_checkpoints"
                " WHERE chain_id = :chain"
            ),
            {"chain": self.chain_id},
        ).first()
        if row is None:
            raise SettlementError("the indexer has not indexed this chain yet")
        number = int(row.finalized_block)
        if number == int(row.block_number):
            return number, int(row.block_timestamp)
        block = self.rpc.block(number)
        if block is None:
            raise SettlementError(f"the node has no block {number}")
        return number, int(block["timestamp"], 16)

    def chain_now(self) -> int:
        block = self.rpc.block("latest")
        if block is None:
            raise SettlementError("the node has no latest block")
        return int(block["timestamp"], 16)

    def block_before(self, timestamp: int, high: int) -> int:
        """The last block at or below `high` whose timestamp is before `timestamp`."""
        low, best = 0, 0
        while low <= high:
            middle = (low + high) // 2
            block = self.rpc.block(middle)
            if block is not None and int(block["timestamp"], 16) < timestamp:
                best, low = middle, middle + 1
            else:
                high = middle - 1
        return best

    # --- the run --------------------------------------------------------------------------

    def run(self, steps: Sequence[str] = ALL_STEPS, epoch: int | None = None) -> Report:
        report = Report()
        lock = "spend" if set(steps) <= set(SPEND_STEPS) else "post"
        names = ["settlement:spend"] if lock == "spend" else ["settlement:post"]
        if set(steps) & set(SPEND_STEPS) and set(steps) & set(POST_STEPS):
            names = ["settlement:spend", "settlement:post"]
        with _advisory_locks(self.settings.database_url, names) as held:
            if not held:
                report.busy = True
                report.wait("another settlement run holds the lock")
                return report
            if set(steps) & set(SPEND_STEPS):
                self._epochs(steps, epoch, report)
            if set(steps) & set(POST_STEPS):
                self._roots(steps, report)
        return report

    # --- epochs ---------------------------------------------------------------------------

    def _epochs(self, steps: Sequence[str], only: int | None, report: Report) -> None:
        with self.engine.connect() as conn:
            clock = self.clock(conn)
            finalized, finalized_at = self.finalized(conn)
            latest = conn.execute(
                text("SELECT max(epoch) FROM settlement_epochs WHERE chain_id = :chain"),
                {"chain": self.chain_id},
            ).scalar()
            first_event = None
            if latest is None:
                first_event = conn.execute(
                    text(
                        "SELECT min(occurred_at) FROM ad_events"
                        " WHERE chain_id = :chain AND verified"
                    ),
                    {"chain": self.chain_id},
                ).scalar()
        now = self.chain_now()
        # an epoch is frozen once it ended, its events are past the IVT hold and its end is
        # final on-chain
        ripe = clock.last_ended(min(now - self.settings.ivt_hold_seconds, finalized_at))
        if latest is not None:
            start = int(latest)
        elif first_event is not None:
            start = max(1, clock.epoch_at(first_event.timestamp()))
        else:
            start = ripe + 1  # nothing tracked yet
        if start > ripe and only is None:
            _, ends_at = clock.bounds(start)
            report.wait(
                f"epoch {start} ends at {ends_at}; it is settled once the chain's time"
                f" ({now}) is past its end plus the IVT hold ({self.settings.ivt_hold_seconds} s)"
                f" and its end is final (finalized block {finalized} at {finalized_at})"
            )
        for number in range(start, ripe + 1):
            if only is not None and number < only:
                with self.engine.connect() as conn:
                    if self._epoch_state(conn, number) not in (ALLOCATED, EMPTY):
                        # the escrow spends epochs forward only: settling a later one first
                        # would leave this one unspendable for good
                        raise SettlementError(
                            f"epoch {number} is not settled yet: epochs are settled in order,"
                            f" so epoch {only} waits for it (run without --epoch)"
                        )
                continue
            if only is not None and number > only:
                break
            if not self._epoch(number, clock, finalized, steps, report):
                return
        if only is not None and only > ripe:
            report.wait(
                f"epoch {only} is not ready: it must have ended {self.settings.ivt_hold_seconds}"
                " s ago (the IVT hold) and its end must be final"
            )

    def _epoch_state(self, conn: Connection, number: int) -> str | None:
        return conn.execute(
            text("SELECT state FROM settlement_epochs WHERE chain_id = :chain AND epoch = :e"),
            {"chain": self.chain_id, "e": number},
        ).scalar()

    def _epoch(
        self, number: int, clock: EpochClock, finalized: int, steps: Sequence[str], report: Report
    ) -> bool:
        """Take epoch `number` as far as it goes now; False when a later epoch must wait."""
        with self.engine.connect() as conn:
            state = self._epoch_state(conn, number)
        if state is None:
            if FREEZE not in steps:
                return False
            state = self.freeze(number, clock, finalized, report)
            _crash_point("freeze:done")
        if state == FROZEN and CHARGE in steps:
            state = self.charge(number, report)
            _crash_point("charge:done")
        if state == CHARGED and SPEND in steps:
            state = self.spend(number, report)
            _crash_point("spend:done")
        if state in (SPENT, ALLOCATED) and SPEND in steps:
            self.release_billed(number)  # again after a crash between spend and release
        if state == SPENT and ALLOCATE in steps:
            state = self.allocate(number, report)
            _crash_point("allocate:done")
        return state in (ALLOCATED, EMPTY)

    def freeze(self, number: int, clock: EpochClock, finalized: int, report: Report) -> str:
        starts_at, ends_at = clock.bounds(number)
        end_block = self.block_before(ends_at, finalized)
        block = self.rpc.block(finalized)
        block_hash = block["hash"] if block else ""
        with self.engine.begin() as conn:
            rows = conn.execute(
                text(BILLABLE),
                {
                    "chain": self.chain_id,
                    "start": starts_at,
                    "end": ends_at,
                    "end_block": end_block,
                },
            ).all()
            charges: dict[int, dict[str, Any]] = {}
            weights: dict[tuple[int, str], dict[str, Any]] = {}
            unpaid = 0
            for row in rows:
                c = charges.setdefault(
                    int(row.campaign_id),
                    {
                        "token": row.token,
                        "bid_model": row.bid_model,
                        "events": 0,
                        "bid_sum": 0,
                        "billed": 0,
                    },
                )
                # what the intake billed leaves the serving budget once the epoch is settled,
                # paid or not
                c["billed"] += int(row.billed)
                if row.account is None:  # not registered on-chain by the epoch's end
                    unpaid += int(row.events)
                    continue
                c["events"] += int(row.events)
                c["bid_sum"] += int(row.bid_sum)
                w = weights.setdefault(
                    (int(row.campaign_id), row.account),
                    {"token": row.token, "events": 0, "weight": 0},
                )
                w["events"] += int(row.events)
                w["weight"] += int(row.bid_sum)
            inputs = {
                "charges": {str(k): {**v} for k, v in sorted(charges.items())},
                "weights": {f"{k[0]}:{k[1]}": v for k, v in sorted(weights.items())},
            }
            state = FROZEN if charges else EMPTY
            note = (
                f"{unpaid} billable event(s) of publishers not registered by the end"
                if unpaid
                else ""
            )
            conn.execute(
                text(
                    "INSERT INTO settlement_epochs (chain_id, epoch, state, starts_at, ends_at,"
                    " block_number, block_hash, end_block, events, inputs_hash, note)"
                    " VALUES (:chain, :e, :state, :start, :end, :block, :hash, :end_block,"
                    " :events, :inputs, :note)"
                ),
                {
                    "chain": self.chain_id,
                    "e": number,
                    "state": state,
                    "start": starts_at,
                    "end": ends_at,
                    "block": finalized,
                    "hash": block_hash,
                    "end_block": end_block,
                    "events": sum(c["events"] for c in charges.values()),
                    "inputs": _hash_json(inputs),
                    "note": note,
                },
            )
            self._log_step(
                conn,
                f"epoch:{number}",
                FREEZE,
                {"starts_at": starts_at, "ends_at": ends_at, "finalized_block": finalized,
                 "block_hash": block_hash, "end_block": end_block,
                 "ivt_hold_seconds": self.settings.ivt_hold_seconds},
                {"state": state, "campaigns": len(charges), "payees": len(weights),
                 "events": sum(c["events"] for c in charges.values()),
                 "inputs_hash": _hash_json(inputs), "unpaid_events": unpaid},
            )  # fmt: skip
            _copy(
                conn,
                "settlement_charges",
                ("chain_id", "epoch", "campaign_id", "token", "bid_model", "events", "bid_sum",
                 "billed", "amount", "asked", "released"),
                (
                    (self.chain_id, number, campaign_id, c["token"], c["bid_model"], c["events"],
                     c["bid_sum"], c["billed"], 0, 0, False)
                    for campaign_id, c in charges.items()
                ),
            )  # fmt: skip
            _copy(
                conn,
                "settlement_allocations",
                ("chain_id", "epoch", "campaign_id", "account", "token", "events", "weight"),
                (
                    (self.chain_id, number, campaign_id, account, w["token"], w["events"],
                     w["weight"])
                    for (campaign_id, account), w in weights.items()
                ),
            )  # fmt: skip
        report.add(
            f"epoch {number}: frozen at block {finalized}, {len(charges)} campaign(s),"
            f" {len(weights)} payee(s)" + (f"; {note}" if note else "")
        )
        return state

    def charge(self, number: int, report: Report) -> str:
        with self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    "SELECT s.campaign_id, s.bid_model, s.bid_sum, coalesce(b.balance, 0) AS"
                    " balance, CASE WHEN c.campaign_id IS NULL THEN 0"
                    " WHEN :e >= c.max_spend_effective_epoch THEN c.max_spend_per_epoch"
                    " ELSE c.previous_max_spend_per_epoch END AS max_spend"
                    " FROM settlement_charges s"
                    " LEFT JOIN campaigns_onchain c ON c.chain_id = s.chain_id"
                    "  AND c.campaign_id = s.campaign_id"
                    " LEFT JOIN escrow_balances b ON b.chain_id = s.chain_id"
                    "  AND b.campaign_id = s.campaign_id"
                    " WHERE s.chain_id = :chain AND s.epoch = :e FOR UPDATE OF s"
                ),
                {"chain": self.chain_id, "e": number},
            ).all()
            asked_total = 0
            for row in rows:
                amount = money.charge(row.bid_model, int(row.bid_sum))
                asked = money.ask(amount, int(row.balance), int(row.max_spend))
                asked_total += asked
                conn.execute(
                    text(
                        "UPDATE settlement_charges SET amount = :amount, asked = :asked"
                        " WHERE chain_id = :chain AND epoch = :e AND campaign_id = :campaign"
                    ),
                    {
                        "amount": amount,
                        "asked": asked,
                        "chain": self.chain_id,
                        "e": number,
                        "campaign": row.campaign_id,
                    },
                )
            self._set_state(conn, number, CHARGED)
            self._log_step(
                conn, f"epoch:{number}", CHARGE, {"charges": len(rows)}, {"asked": asked_total}
            )
        report.add(f"epoch {number}: {len(rows)} charge(s), {asked_total} asked in all")
        return CHARGED

    def _log_step(
        self, conn: Connection, subject: str, step: str, inputs: Any, outputs: Any
    ) -> None:
        """One row per step done, with what it read and what it wrote, in the step's own
        transaction (so the log never shows a step that did not commit)."""
        conn.execute(
            text(
                "INSERT INTO settlement_steps (chain_id, subject, step, inputs, outputs)"
                " VALUES (:chain, :subject, :step, CAST(:inputs AS jsonb),"
                " CAST(:outputs AS jsonb))"
                " ON CONFLICT (chain_id, subject, step) DO UPDATE SET inputs = excluded.inputs,"
                " outputs = excluded.outputs, done_at = now()"
            ),
            {
                "chain": self.chain_id,
                "subject": subject,
                "step": step,
                "inputs": json.dumps(inputs, default=str),
                "outputs": json.dumps(outputs, default=str),
            },
        )

    def _set_state(
        self, conn: Connection, number: int, state: str, note: str | None = None
    ) -> None:
        conn.execute(
            text(
                "UPDATE settlement_epochs SET state = :state, note = coalesce(:note, note),"
                " updated_at = now() WHERE chain_id = :chain AND epoch = :e"
            ),
            {"state": state, "note": note, "chain": self.chain_id, "e": number},
        )

    def batches(self, conn: Connection, number: int) -> list[list[tuple[int, int, str]]]:
        """The epoch's spend batches: (campaign, asked, token) by campaign id, at most
        MAX_BATCH campaigns and MAX_BATCH_TOKENS tokens each. The same charges always give
        the same batches, so a resumed run recognises its own."""
        rows = conn.execute(
            text(
                "SELECT campaign_id, asked, token FROM settlement_charges"
                " WHERE chain_id = :chain AND epoch = :e AND asked > 0 ORDER BY campaign_id"
            ),
            {"chain": self.chain_id, "e": number},
        ).all()
        batches: list[list[tuple[int, int, str]]] = []
        current: list[tuple[int, int, str]] = []
        tokens: set[str] = set()
        for row in rows:
            item = (int(row.campaign_id), int(row.asked), row.token)
            if len(current) == MAX_BATCH or (
                row.token not in tokens and len(tokens) == MAX_BATCH_TOKENS
            ):
                batches.append(current)
                current, tokens = [], set()
            current.append(item)
            tokens.add(row.token)
        if current:
            batches.append(current)
        return batches

    def spend(self, number: int, report: Report) -> str:
        escrow = self.deployment.address("PaymentEscrow")
        with self.engine.connect() as conn:
            batches = self.batches(conn, number)
        for index, batch in enumerate(batches):
            step = f"spend:{number}:{index}"
            if self._spent_onchain(number, [c for c, _, _ in batch]):
                self._reconcile_tx(step)
                continue
            data = call_data(
                "PaymentEscrow",
                "spend_batch",
                number,
                [c for c, _, _ in batch],
                [a for _, a, _ in batch],
            )
            outcome = self._transact(step, "escrow", escrow, data, report)
            if outcome != "final":
                return CHARGED
            if not self._spent_onchain(number, [c for c, _, _ in batch]):
                report.wait(f"{step}: mined; the indexer has not seen its Spent events yet")
                return CHARGED
        return self._record_spent(number, report)

    def _spent_onchain(self, number: int, campaigns: list[int]) -> bool:
        """Every campaign of the batch has a Spent or SpendSkipped event for the epoch at or
        below the finalized block (so the batch is done and final)."""
        with self.engine.connect() as conn:
            finalized, _ = self.finalized(conn)
            seen = conn.execute(
                text(
                    "SELECT count(DISTINCT campaign_id) FROM ("
                    " SELECT campaign_id FROM epoch_spends WHERE chain_id = :chain"
                    "  AND epoch = :e AND campaign_id = ANY(:ids) AND block_number <= :final"
                    " UNION ALL SELECT campaign_id FROM epoch_spend_skips WHERE chain_id = :chain"
                    "  AND epoch = :e AND campaign_id = ANY(:ids) AND block_number <= :final) s"
                ),
                {"chain": self.chain_id, "e": number, "ids": campaigns, "final": finalized},
            ).scalar()
        return int(seen or 0) == len(set(campaigns))

    def _record_spent(self, number: int, report: Report) -> str:
        """What the Spent events say was charged; the rest is written off; billed spend
        leaves the serving budget (once per campaign and epoch)."""
        with self.engine.begin() as conn:
            params = {"chain": self.chain_id, "e": number}
            conn.execute(
                text(
                    "UPDATE settlement_charges SET charged = 0, publisher_share = 0, fee = 0,"
                    " written_off = amount WHERE chain_id = :chain AND epoch = :e"
                ),
                params,
            )
            conn.execute(
                text(
                    "UPDATE settlement_charges s SET charged = p.charged,"
                    " publisher_share = p.publisher_share, fee = p.fee,"
                    " written_off = s.amount - least(s.amount, p.charged)"
                    " FROM epoch_spends p WHERE p.chain_id = s.chain_id AND p.epoch = s.epoch"
                    " AND p.campaign_id = s.campaign_id AND s.chain_id = :chain AND s.epoch = :e"
                ),
                params,
            )
            self._set_state(conn, number, SPENT)
            totals = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE charged > 0) AS charged_campaigns,"
                    " coalesce(sum(charged), 0) AS charged, coalesce(sum(written_off), 0) AS"
                    " written_off, coalesce(sum(publisher_share), 0) AS share,"
                    " coalesce(sum(fee), 0) AS fee"
                    " FROM settlement_charges WHERE chain_id = :chain AND epoch = :e"
                ),
                {"chain": self.chain_id, "e": number},
            ).one()
            transactions = conn.execute(
                text(
                    "SELECT step, tx_hash, status FROM settlement_txs WHERE chain_id = :chain"
                    " AND step LIKE :prefix ORDER BY step"
                ),
                {"chain": self.chain_id, "prefix": f"spend:{number}:%"},
            ).all()
            self._log_step(
                conn,
                f"epoch:{number}",
                SPEND,
                {"transactions": [list(t) for t in transactions]},
                {"charged": int(totals.charged), "publisher_share": int(totals.share),
                 "fee": int(totals.fee), "written_off": int(totals.written_off),
                 "campaigns_charged": int(totals.charged_campaigns)},
            )  # fmt: skip
        report.add(
            f"epoch {number}: spent {totals.charged} from {totals.charged_campaigns}"
            f" campaign(s), {totals.written_off} written off"
        )
        self.release_billed(number)
        return SPENT

    def release_billed(self, number: int) -> None:
        """Settled spend is no longer billed-unsettled: take it out of each campaign's
        `billed` in Redis, once (a mark per campaign and epoch), so the budget model's free
        budget = escrow balance − billed − reserved stays true after the escrow moved it."""
        if not self.settings.redis_url:
            return
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT campaign_id, billed FROM settlement_charges WHERE chain_id = :chain"
                    " AND epoch = :e AND NOT released"
                ),
                {"chain": self.chain_id, "e": number},
            ).all()
        if not rows:
            return
        redis = self.redis()
        script = redis.register_script(RELEASE_BILLED)
        for row in rows:
            keys = Keys(int(row.campaign_id), self.settings.tracking_shards)
            script(
                keys=[keys.settled(number), keys.billed],
                args=[int(row.billed), RELEASED_MARK_TTL],
            )
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE settlement_charges SET released = true WHERE chain_id = :chain"
                        " AND epoch = :e AND campaign_id = :campaign"
                    ),
                    {"chain": self.chain_id, "e": number, "campaign": row.campaign_id},
                )

    def allocate(self, number: int, report: Report) -> str:
        with self.engine.begin() as conn:
            params = {"chain": self.chain_id, "e": number}
            shares = {
                int(row.campaign_id): int(row.publisher_share or 0)
                for row in conn.execute(
                    text(
                        "SELECT campaign_id, publisher_share FROM settlement_charges"
                        " WHERE chain_id = :chain AND epoch = :e FOR UPDATE"
                    ),
                    params,
                )
            }
            weights: dict[int, dict[str, int]] = {}
            for row in conn.execute(
                text(
                    "SELECT campaign_id, account, weight FROM settlement_allocations"
                    " WHERE chain_id = :chain AND epoch = :e"
                ),
                params,
            ):
                weights.setdefault(int(row.campaign_id), {})[row.account] = int(row.weight)
            amounts = [
                (campaign_id, account, amount)
                for campaign_id, share in shares.items()
                for account, amount in money.allocate(share, weights.get(campaign_id, {})).items()
            ]
            conn.execute(
                text(
                    "CREATE TEMPORARY TABLE settlement_amounts (campaign_id bigint, account text,"
                    " amount numeric(78, 0)) ON COMMIT DROP"
                )
            )
            _copy(conn, "settlement_amounts", ("campaign_id", "account", "amount"), amounts)
            conn.execute(
                text(
                    "UPDATE settlement_allocations a SET amount = t.amount"
                    " FROM settlement_amounts t WHERE a.chain_id = :chain AND a.epoch = :e"
                    " AND a.campaign_id = t.campaign_id AND a.account = t.account"
                ),
                params,
            )
            self._set_state(conn, number, ALLOCATED)
            payees = len({account for _, account, amount in amounts if amount})
            self._log_step(
                conn,
                f"epoch:{number}",
                ALLOCATE,
                {"publisher_share": sum(shares.values())},
                {"allocated": sum(amount for _, _, amount in amounts), "payees": payees},
            )
        report.add(f"epoch {number}: allocated to {payees} payee(s)")
        return ALLOCATED

    # --- transactions ---------------------------------------------------------------------

    def _transact(self, step: str, who: str, to: str, data: str, report: Report) -> str:
        """Send the step's transaction once: the stored one if a run signed it before (sent
        again, which is harmless if it was sent), else a new one stored before it is sent.
        'final' once mined at or below the finalized block; 'pending' otherwise."""
        from chain.sender import NonceTaken, SignedTx, TxNotMined, TxReverted

        sender = self.sender(who)
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM settlement_txs WHERE chain_id = :chain AND step = :step"),
                {"chain": self.chain_id, "step": step},
            ).first()
        if row is not None and row.status == "reverted":
            raise SettlementError(f"{step}: transaction {row.tx_hash} reverted: {row.error}")
        if row is not None and row.status == "mined":
            return self._await_final(step, int(row.block_number), report)
        if row is None:
            try:
                tx = sender.prepare(to, data)
            except TxReverted as exc:
                raise SettlementError(f"{step}: would revert: {exc.reason}") from exc
            self._save_tx(step, tx, insert=True)
            _crash_point(f"{step.split(':')[0]}:signed")
        else:
            tx = SignedTx.from_json(row.signed)
        try:
            sender.broadcast(tx)
            _crash_point(f"{step.split(':')[0]}:sent")
            receipt = sender.send_prepared(tx, persist=lambda bumped: self._save_tx(step, bumped))
        except TxReverted as exc:
            self._tx_status(step, "reverted", error=str(exc.reason or "no reason given"))
            raise SettlementError(f"{step}: {tx.hash} reverted: {exc.reason}") from exc
        except TxNotMined:
            report.wait(f"{step}: {tx.hash} sent, not mined yet")
            return "pending"
        except NonceTaken:
            # another transaction took its nonce, so it can never be mined: forget it; the
            # next run looks at the chain again and signs the same call afresh if needed
            with self.engine.begin() as conn:
                conn.execute(
                    text("DELETE FROM settlement_txs WHERE chain_id = :chain AND step = :step"),
                    {"chain": self.chain_id, "step": step},
                )
            report.wait(f"{step}: nonce {tx.nonce} was taken by another transaction")
            return "pending"
        block = int(str(receipt["blockNumber"]), 0)
        self._tx_status(step, "mined", block=block, tx_hash=str(receipt["transactionHash"]))
        report.add(f"{step}: mined in block {block} ({receipt['transactionHash']})")
        return self._await_final(step, block, report)

    def _reconcile_tx(self, step: str) -> None:
        """The step is done on-chain: a stored transaction still marked signed (its run died
        before the receipt) gets the receipt of whichever of its versions was mined."""
        from chain.sender import SignedTx

        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT signed FROM settlement_txs WHERE chain_id = :chain AND step = :step"
                    " AND status = 'signed'"
                ),
                {"chain": self.chain_id, "step": step},
            ).first()
        if row is None:
            return
        for tx_hash in SignedTx.from_json(row.signed).hashes:
            receipt = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
            if receipt:
                block = int(str(receipt["blockNumber"]), 0)
                self._tx_status(step, "mined", block=block, tx_hash=tx_hash)
                return
        # done on-chain by a transaction that is not ours: another holder of the key
        self._tx_status(step, "replaced", error="the step was done by another transaction")

    def _save_tx(self, step: str, tx: Any, insert: bool = False) -> None:
        with self.engine.begin() as conn:
            params = {
                "chain": self.chain_id,
                "step": step,
                "sender": tx.sender.lower(),
                "hash": tx.hash,
                "signed": tx.to_json(),
            }
            if insert:
                conn.execute(
                    text(
                        "INSERT INTO settlement_txs (chain_id, step, sender, tx_hash, signed,"
                        " status, error) VALUES (:chain, :step, :sender, :hash,"
                        " CAST(:signed AS jsonb), 'signed', '')"
                    ),
                    params,
                )
            else:
                conn.execute(
                    text(
                        "UPDATE settlement_txs SET tx_hash = :hash, signed = CAST(:signed AS"
                        " jsonb), updated_at = now() WHERE chain_id = :chain AND step = :step"
                    ),
                    params,
                )

    def _tx_status(
        self,
        step: str,
        status: str,
        *,
        error: str = "",
        block: int | None = None,
        tx_hash: str | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE settlement_txs SET status = :status, error = :error,"
                    " block_number = :block, tx_hash = coalesce(:hash, tx_hash),"
                    " updated_at = now() WHERE chain_id = :chain AND step = :step"
                ),
                {
                    "status": status,
                    "error": error,
                    "block": block,
                    "hash": tx_hash,
                    "chain": self.chain_id,
                    "step": step,
                },
            )

    def _await_final(self, step: str, block: int, report: Report) -> str:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            with self.engine.connect() as conn:
                finalized, _ = self.finalized(conn)
            if finalized >= block:
                return "final"
            if time.monotonic() >= deadline:
                report.wait(f"{step}: block {block} is not final yet (finalized {finalized})")
                return "pending"
            time.sleep(1.0)

    # --- roots ----------------------------------------------------------------------------

    def _roots(self, steps: Sequence[str], report: Report) -> None:
        self._notice_revocations(report)
        with self.engine.connect() as conn:
            blocked = conn.execute(
                text(
                    "SELECT root_id, note FROM settlement_roots WHERE chain_id = :chain"
                    " AND state = :state ORDER BY root_id LIMIT 1"
                ),
                {"chain": self.chain_id, "state": OPERATOR_NEEDED},
            ).first()
            unposted = (
                conn.execute(
                    text(
                        "SELECT root_id FROM settlement_roots WHERE chain_id = :chain"
                        " AND state = :state ORDER BY root_id"
                    ),
                    {"chain": self.chain_id, "state": BUILT},
                )
                .scalars()
                .all()
            )
        if blocked is not None:
            report.wait(
                f"operator needed: root {blocked.root_id} was revoked ({blocked.note}); nothing"
                " is built or posted until `python -m api.settlement release-root"
                f" {blocked.root_id}` after the cause is found"
            )
            return
        for root_id in unposted:
            if POST not in steps or not self.post(int(root_id), report):
                return
        if BUILD not in steps:
            return
        root_id = self.build(report)
        _crash_point("build:done")
        if root_id is not None and POST in steps:
            self.post(root_id, report)
        if PUSH in steps:
            self.push(report)

    def _notice_revocations(self, report: Report) -> None:
        with self.engine.begin() as conn:
            revoked = (
                conn.execute(
                    text(
                        "UPDATE settlement_roots s SET state = :needed, updated_at = now(),"
                        " note = 'revoked on-chain in block ' || r.posted_block"
                        " FROM payout_roots r WHERE r.chain_id = s.chain_id"
                        " AND r.root_id = s.root_id AND r.revoked AND s.chain_id = :chain"
                        " AND s.state IN (:built, :posted) RETURNING s.root_id"
                    ),
                    {
                        "needed": OPERATOR_NEEDED,
                        "chain": self.chain_id,
                        "built": BUILT,
                        "posted": POSTED,
                    },
                )
                .scalars()
                .all()
            )
        for root_id in revoked:
            log.error("root %s was revoked on-chain: settlement waits for an operator", root_id)
            report.add(f"root {root_id}: revoked on-chain; operator needed")

    def build(self, report: Report) -> int | None:
        """The next root over every allocated epoch not in a root yet, when none is pending."""
        from api.settlement import artefact as artefacts
        from api.settlement.merkle import Leaf, PayoutTree

        with self.engine.begin() as conn:
            pending = conn.execute(
                text(
                    "SELECT root_id FROM payout_root_status WHERE chain_id = :chain"
                    " AND status = 'pending'"
                ),
                {"chain": self.chain_id},
            ).scalar()
            if pending is not None:
                report.wait(f"root {pending} is pending: the next one waits for it to mature")
                return None
            epochs = [
                int(e)
                for e in conn.execute(
                    text(
                        "SELECT epoch FROM settlement_epochs WHERE chain_id = :chain"
                        " AND state = :allocated AND root_id IS NULL ORDER BY epoch"
                    ),
                    {"chain": self.chain_id, "allocated": ALLOCATED},
                ).scalars()
            ]
            if not epochs:
                return None
            allocations = conn.execute(
                text(
                    "SELECT epoch, campaign_id, account, token, amount FROM settlement_allocations"
                    " WHERE chain_id = :chain AND epoch = ANY(:epochs) AND amount > 0"
                    " ORDER BY epoch, campaign_id, account"
                ),
                {"chain": self.chain_id, "epochs": epochs},
            ).all()
            if not allocations:
                conn.execute(
                    text(
                        "UPDATE settlement_epochs SET root_id = 0, note = 'nothing to allocate'"
                        " WHERE chain_id = :chain AND epoch = ANY(:epochs)"
                    ),
                    {"chain": self.chain_id, "epochs": epochs},
                )
                report.add(f"epochs {epochs}: nothing allocated, no root needed")
                return None
            latest = conn.execute(
                text("SELECT max(root_id) FROM payout_roots WHERE chain_id = :chain"),
                {"chain": self.chain_id},
            ).scalar()
            root_id = int(latest or 0) + 1
            previous = conn.execute(
                text(
                    "SELECT root_id, root FROM payout_roots WHERE chain_id = :chain"
                    " AND NOT revoked ORDER BY root_id DESC LIMIT 1"
                ),
                {"chain": self.chain_id},
            ).first()
            previous_leaves: dict[tuple[str, str], int] = {}
            previous_id = None
            if previous is not None:
                previous_id = int(previous.root_id)
                previous_leaves = {
                    (r.account, r.token): int(r.cumulative)
                    for r in conn.execute(
                        text(
                            "SELECT account, token, cumulative FROM payout_proofs"
                            " WHERE chain_id = :chain AND root_id = :root"
                        ),
                        {"chain": self.chain_id, "root": previous_id},
                    )
                }
                if not previous_leaves:
                    raise SettlementError(
                        f"root {previous_id} is live on-chain but this network did not build it"
                        " (no leaves stored): an operator must reconcile before the next root"
                    )
            claimed = {
                (r.account, r.token): int(r.paid)
                for r in conn.execute(
                    text(
                        "SELECT account, token, max(cumulative_amount) AS paid FROM payout_claims"
                        " WHERE chain_id = :chain GROUP BY account, token"
                    ),
                    {"chain": self.chain_id},
                )
            }
            finalized, _ = self.finalized(conn)
            block = self.rpc.block(finalized)
            leaves = money.cumulative(
                previous_leaves,
                (((a.account, a.token), int(a.amount)) for a in allocations),
                claimed,
            )
            payout = self.deployment.address("PublisherPayout")
            tree = PayoutTree(
                self.chain_id,
                payout,
                [
                    Leaf(account, token, amount)
                    for (account, token), amount in sorted(leaves.items())
                ],
            )
            spends = conn.execute(
                text(
                    "SELECT epoch, campaign_id, token, charged, publisher_share, fee"
                    " FROM epoch_spends WHERE chain_id = :chain AND epoch = ANY(:epochs)"
                    " ORDER BY epoch, campaign_id"
                ),
                {"chain": self.chain_id, "epochs": epochs},
            ).all()
            document = artefacts.build(
                chain_id=self.chain_id,
                payout_contract=payout,
                escrow_contract=self.deployment.address("PaymentEscrow"),
                root_id=root_id,
                previous_root_id=previous_id,
                epochs=epochs,
                spends=[
                    artefacts.Spend(
                        int(s.epoch),
                        int(s.campaign_id),
                        s.token,
                        int(s.charged),
                        int(s.publisher_share),
                        int(s.fee),
                    )
                    for s in spends
                ],
                allocations=[
                    artefacts.Allocation(
                        int(a.epoch), int(a.campaign_id), a.token, a.account, int(a.amount)
                    )
                    for a in allocations
                ],
                previous_leaves=[Leaf(a, t, v) for (a, t), v in previous_leaves.items()],
                tree=tree,
                finalized_block=(finalized, block["hash"] if block else ""),
                code_version=code_version(),
            )
            path = self.artefact_path(root_id)
            _write_atomically(path, document)
            uri = self.artefact_uri(root_id)
            conn.execute(
                text(
                    "INSERT INTO settlement_roots (chain_id, root_id, state, root,"
                    " previous_root_id, epochs, totals, leaves, artefact_path, artefact_uri,"
                    " note) VALUES (:chain, :root_id, :state, :root, :previous, :epochs,"
                    " CAST(:totals AS jsonb), :leaves, :path, :uri, '')"
                ),
                {
                    "chain": self.chain_id,
                    "root_id": root_id,
                    "state": BUILT,
                    "root": "0x" + tree.root.hex(),
                    "previous": previous_id,
                    "epochs": epochs,
                    "totals": json.dumps({t.lower(): str(v) for t, v in tree.totals().items()}),
                    "leaves": len(tree.leaves),
                    "path": str(path),
                    "uri": uri,
                },
            )
            conn.execute(
                text(
                    "UPDATE settlement_epochs SET root_id = :root_id WHERE chain_id = :chain"
                    " AND epoch = ANY(:epochs)"
                ),
                {"root_id": root_id, "chain": self.chain_id, "epochs": epochs},
            )
            _store_proofs(conn, self.chain_id, root_id, tree)
            self._log_step(
                conn,
                f"root:{root_id}",
                BUILD,
                {"epochs": epochs, "previous_root_id": previous_id,
                 "finalized_block": finalized, "allocations": len(allocations)},
                {"root": "0x" + tree.root.hex(), "leaves": len(tree.leaves),
                 "totals": {t.lower(): str(v) for t, v in tree.totals().items()},
                 "artefact_uri": uri, "artefact_path": str(path)},
            )  # fmt: skip
        report.add(
            f"root {root_id}: built over epochs {epochs}, {len(tree.leaves)} leaves, artefact {uri}"
        )
        return root_id

    def push(self, report: Report) -> None:
        """Pay publishers who opted in to push payouts with `claim_many` under the current
        root: each leaf whose claimable amount reaches the publisher's threshold. A skipped
        item (a payee that cannot receive) is recorded with the contract's reason and tried
        again on the next run, up to PUSH_ATTEMPTS times per root."""
        payout = self.deployment.address("PublisherPayout")
        with self.engine.connect() as conn:
            root_id = conn.execute(
                text(
                    "SELECT root_id FROM payout_root_status WHERE chain_id = :chain"
                    " AND status = 'current'"
                ),
                {"chain": self.chain_id},
            ).scalar()
            if root_id is None:
                return
            open_steps = conn.execute(
                text(
                    "SELECT step, signed->>'data' AS data FROM settlement_txs"
                    " WHERE chain_id = :chain AND step LIKE :prefix"
                    " AND status IN ('signed', 'mined') ORDER BY step"
                ),
                {"chain": self.chain_id, "prefix": f"push:{root_id}:%"},
            ).all()
        # a push sent before (this run or one that died) is seen through first
        for open_step in open_steps:
            if self._transact(open_step.step, "payout", payout, open_step.data, report) != "final":
                return
            self._record_push(open_step.step, int(root_id), report)
        for _ in range(PUSHES_PER_RUN):
            with self.engine.connect() as conn:
                due = conn.execute(
                    text(PUSHES_DUE),
                    {"chain": self.chain_id, "root": root_id, "attempts": PUSH_ATTEMPTS,
                     "limit": MAX_CLAIMS},
                ).all()  # fmt: skip
                sent = conn.execute(
                    text(
                        "SELECT count(*) FROM settlement_txs WHERE chain_id = :chain"
                        " AND step LIKE :prefix"
                    ),
                    {"chain": self.chain_id, "prefix": f"push:{root_id}:%"},
                ).scalar()
            if not due:
                return
            step = f"push:{root_id}:{int(sent or 0) + 1}"
            requests = [
                (
                    to_checksum_address(row.account),
                    to_checksum_address(row.token),
                    int(row.cumulative),
                    [bytes.fromhex(node.removeprefix("0x")) for node in row.proof],
                )
                for row in due
            ]
            data = call_data("PublisherPayout", "claim_many", requests)
            if self._transact(step, "payout", payout, data, report) != "final":
                return
            self._record_push(step, int(root_id), report)

    def _record_push(self, step: str, root_id: int, report: Report) -> None:
        """Each item of a mined `claim_many`, from its Claimed and ClaimSkipped events."""
        from chain.contracts import load_abi
        from chain.decode import Decoder

        with self.engine.connect() as conn:
            tx_hash = conn.execute(
                text("SELECT tx_hash FROM settlement_txs WHERE chain_id = :chain AND step = :s"),
                {"chain": self.chain_id, "s": step},
            ).scalar()
        receipt = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
        payout = self.deployment.address("PublisherPayout")
        decoder = Decoder(
            {payout: "PublisherPayout"}, {"PublisherPayout": load_abi("PublisherPayout")}
        )
        outcomes: dict[tuple[str, str], tuple[str, str, int]] = {}
        for log_entry in receipt["logs"] if receipt else []:
            if str(log_entry["address"]).lower() != payout.lower():
                continue
            event = decoder.decode(log_entry)
            key = (str(event.args["account"]).lower(), str(event.args["token"]).lower())
            if event.name == "Claimed":
                outcomes[key] = ("paid", "", int(event.args["amount"]))
            elif event.name == "ClaimSkipped":
                outcomes[key] = ("skipped", str(event.args["reason"]), 0)
        with self.engine.begin() as conn:
            for (account, token), (status, reason, amount) in outcomes.items():
                conn.execute(
                    text(
                        "INSERT INTO settlement_pushes (chain_id, root_id, account, token,"
                        " amount, status, reason, attempts, tx_hash) VALUES (:chain, :root,"
                        " :account, :token, :amount, :status, :reason, 1, :hash)"
                        " ON CONFLICT (chain_id, root_id, account, token) DO UPDATE SET"
                        " amount = excluded.amount, status = excluded.status,"
                        " reason = excluded.reason, tx_hash = excluded.tx_hash,"
                        " attempts = settlement_pushes.attempts + 1, updated_at = now()"
                    ),
                    {"chain": self.chain_id, "root": root_id, "account": account,
                     "token": token, "amount": amount, "status": status, "reason": reason,
                     "hash": tx_hash},
                )  # fmt: skip
            conn.execute(
                text(
                    "UPDATE settlement_txs SET status = 'recorded', updated_at = now()"
                    " WHERE chain_id = :chain AND step = :step"
                ),
                {"chain": self.chain_id, "step": step},
            )
        paid = sum(1 for o in outcomes.values() if o[0] == "paid")
        report.add(f"{step}: pushed {paid} payout(s), {len(outcomes) - paid} skipped")

    def artefact_path(self, root_id: int) -> Path:
        return Path(self.settings.settlement_artefact_dir) / str(self.chain_id) / f"{root_id}.json"

    def artefact_uri(self, root_id: int) -> str:
        base = self.settings.settlement_artefact_base_url or self.settings.public_url(
            "/api/v1/settlement/artefacts"
        )
        return f"{base.rstrip('/')}/{self.chain_id}/{root_id}.json"

    def post(self, root_id: int, report: Report) -> bool:
        """`post_root` for a built root; True once it is final on-chain."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT root, totals, artefact_uri FROM settlement_roots"
                    " WHERE chain_id = :chain AND root_id = :root_id"
                ),
                {"chain": self.chain_id, "root_id": root_id},
            ).one()
            onchain = conn.execute(
                text(
                    "SELECT root FROM payout_roots WHERE chain_id = :chain AND root_id = :root_id"
                ),
                {"chain": self.chain_id, "root_id": root_id},
            ).scalar()
        if onchain is None:
            tokens = sorted(row.totals)
            data = call_data(
                "PublisherPayout",
                "post_root",
                root_id,
                bytes.fromhex(row.root.removeprefix("0x")),
                [to_checksum_address(t) for t in tokens],
                [int(row.totals[t]) for t in tokens],
                row.artefact_uri,
            )
            outcome = self._transact(
                f"post:{root_id}",
                "payout",
                self.deployment.address("PublisherPayout"),
                data,
                report,
            )
            if outcome != "final":
                return False
            with self.engine.connect() as conn:
                onchain = conn.execute(
                    text(
                        "SELECT root FROM payout_roots WHERE chain_id = :chain"
                        " AND root_id = :root_id"
                    ),
                    {"chain": self.chain_id, "root_id": root_id},
                ).scalar()
            if onchain is None:
                report.wait(f"root {root_id}: posted; the indexer has not seen it yet")
                return False
        self._reconcile_tx(f"post:{root_id}")
        if onchain.lower() != row.root.lower():
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE settlement_roots SET state = :needed, note = :note"
                        " WHERE chain_id = :chain AND root_id = :root_id"
                    ),
                    {
                        "needed": OPERATOR_NEEDED,
                        "chain": self.chain_id,
                        "root_id": root_id,
                        "note": f"root id {root_id} on-chain is {onchain}, not the one built",
                    },
                )
            raise SettlementError(
                f"root {root_id} on-chain is {onchain}, not {row.root}: another key posted it"
            )
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE settlement_roots SET state = :posted, updated_at = now()"
                    " WHERE chain_id = :chain AND root_id = :root_id AND state = :built"
                ),
                {"posted": POSTED, "built": BUILT, "chain": self.chain_id, "root_id": root_id},
            )
            posted = conn.execute(
                text(
                    "SELECT tx_hash, status FROM settlement_txs WHERE chain_id = :chain"
                    " AND step = :step"
                ),
                {"chain": self.chain_id, "step": f"post:{root_id}"},
            ).first()
            self._log_step(
                conn,
                f"root:{root_id}",
                POST,
                {"root": row.root, "artefact_uri": row.artefact_uri},
                {"onchain_root": onchain, "transaction": list(posted) if posted else None},
            )
        report.add(f"root {root_id}: posted")
        return True

    def release_root(self, root_id: int) -> list[int]:
        """An operator's decision on a revoked root: its epochs go into the next root (built
        from the data as it is now). Returns those epochs."""
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "SELECT state FROM settlement_roots WHERE chain_id = :chain"
                    " AND root_id = :root_id FOR UPDATE"
                ),
                {"chain": self.chain_id, "root_id": root_id},
            ).first()
            if row is None:
                raise SettlementError(f"no root {root_id} was built here")
            if row.state != OPERATOR_NEEDED:
                raise SettlementError(
                    f"root {root_id} is {row.state}: only a revoked root is released"
                )
            conn.execute(
                text(
                    "UPDATE settlement_roots SET state = :released, updated_at = now()"
                    " WHERE chain_id = :chain AND root_id = :root_id"
                ),
                {"released": RELEASED, "chain": self.chain_id, "root_id": root_id},
            )
            return [
                int(e)
                for e in conn.execute(
                    text(
                        "UPDATE settlement_epochs SET root_id = NULL WHERE chain_id = :chain"
                        " AND root_id = :root_id RETURNING epoch"
                    ),
                    {"chain": self.chain_id, "root_id": root_id},
                ).scalars()
            ]


# Billable events of an epoch by campaign and publisher, with the publisher's payment wallet
# at the epoch's last block (null when it was not registered by then): the impressions of CPM
# campaigns and the clicks of CPC ones, verified, received within the epoch. The token is the
# campaign's on-chain one, the one the escrow pays in.
BILLABLE = """
WITH events AS (
    SELECT campaign_id, publisher, min(token) AS token, min(bid_model) AS bid_model,
           count(*) AS events, sum(bid) AS bid_sum, sum(price) AS billed
    FROM ad_events
    WHERE chain_id = :chain AND verified
      AND occurred_at >= to_timestamp(:start) AND occurred_at < to_timestamp(:end)
      AND ((bid_model = 'cpm' AND kind = 'impression') OR (bid_model = 'cpc' AND kind = 'click'))
    GROUP BY campaign_id, publisher
), wallets AS (
    SELECT DISTINCT ON (subject) subject AS publisher,
           coalesce(args->>'new_wallet', args->>'payment_wallet') AS account
    FROM chain_events
    WHERE chain_id = :chain AND canonical AND contract = 'PublisherRegistry'
      AND event IN ('PublisherRegistered', 'PaymentWalletUpdated')
      AND block_number <= :end_block
      AND subject IN (SELECT publisher FROM events)
    ORDER BY subject, block_number DESC, log_index DESC
)
SELECT e.campaign_id, lower(c.token) AS token, e.bid_model, e.events, e.bid_sum, e.billed,
       lower(w.account) AS account
FROM events e
JOIN campaigns_onchain c ON c.chain_id = :chain AND c.campaign_id = e.campaign_id
LEFT JOIN wallets w ON w.publisher = e.publisher
ORDER BY e.campaign_id, w.account
"""


# Leaves of the current root owed to publishers who opted in to push payouts: at least their
# threshold (and one unit) above what was claimed, not pushed yet, or skipped fewer times than
# the limit. A publisher's leaves are its own wallet's and its payment wallet's.
PUSHES_DUE = """
WITH payees AS (
    SELECT DISTINCT ON (account) account, push_threshold FROM (
        SELECT lower(p.wallet) AS account, p.push_threshold FROM publisher_profiles p
        WHERE p.push_payouts
        UNION ALL
        SELECT lower(o.payment_wallet), p.push_threshold FROM publisher_profiles p
        JOIN publishers_onchain o ON o.chain_id = :chain AND o.wallet = lower(p.wallet)
        WHERE p.push_payouts
    ) a ORDER BY account, push_threshold
), paid AS (
    SELECT account, token, max(cumulative_amount) AS claimed FROM payout_claims
    WHERE chain_id = :chain GROUP BY account, token
)
SELECT l.account, l.token, l.cumulative, l.proof
FROM payout_proofs l
JOIN payees w ON w.account = l.account
LEFT JOIN paid c ON c.account = l.account AND c.token = l.token
LEFT JOIN settlement_pushes s ON s.chain_id = l.chain_id AND s.root_id = l.root_id
     AND s.account = l.account AND s.token = l.token
WHERE l.chain_id = :chain AND l.root_id = :root
  AND l.cumulative - coalesce(c.claimed, 0) >= greatest(w.push_threshold, 1)
  AND (s.status IS NULL OR (s.status = 'skipped' AND s.attempts < :attempts))
ORDER BY l.account, l.token
LIMIT :limit
"""


def _copy(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY `rows` into `table` inside the connection's transaction."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _store_proofs(conn: Connection, chain_id: int, root_id: int, tree: Any) -> None:
    _copy(
        conn,
        "payout_proofs",
        ("chain_id", "root_id", "account", "token", "cumulative", "proof"),
        (
            (
                chain_id,
                root_id,
                leaf.account.lower(),
                leaf.token.lower(),
                leaf.cumulative_amount,
                proof,
            )
            for leaf, proof in tree.iter_proof_texts()
        ),
    )


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    with temporary.open("w") as handle:
        json.dump(document, handle, separators=(",", ":"))
        handle.flush()
    temporary.replace(path)


def _hash_json(value: Any) -> str:
    return "0x" + keccak(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hex()


def code_version() -> str:
    """The commit this code was built from (or the package version outside a checkout)."""
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("buzzer-network")
        except PackageNotFoundError:
            return "unknown"


# --- crash injection (tests) -----------------------------------------------------------------
# `BUZZER_SETTLEMENT_CRASH_AT=<step>:<point>` kills the process there as a SIGKILL would (no
# cleanup), so tests resume from every step boundary (`freeze:done` … `build:done`) and from
# between storing a transaction and sending it (`spend:signed`, `post:signed`) or sending it
# and seeing its receipt (`spend:sent`, `post:sent`).
CRASH_POINTS = (
    "freeze:done",
    "charge:done",
    "spend:signed",
    "spend:sent",
    "spend:done",
    "allocate:done",
    "build:done",
    "post:signed",
    "post:sent",
)


def _crash_point(name: str) -> None:
    import os

    if os.environ.get("BUZZER_SETTLEMENT_CRASH_AT") == name:
        os._exit(137)


@contextmanager
def _advisory_locks(database_url: str, names: Sequence[str]) -> Iterator[bool]:
    """Hold session-level advisory locks named `names` for the run; yields False (holding
    none) when another run holds any of them."""
    keys = [
        int.from_bytes(hashlib.sha256(n.encode()).digest()[:8], "big", signed=True) for n in names
    ]
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        taken: list[int] = []
        try:
            for key in keys:
                if conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:  # type: ignore[index]
                    taken.append(key)
                else:
                    yield False
                    return
            yield True
        finally:
            for key in taken:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])


def settle(
    settings: Settings,
    steps: Sequence[str] = ALL_STEPS,
    epoch: int | None = None,
    wait_seconds: float = 0.0,
) -> Report:
    settlement = Settlement(settings, wait_seconds=wait_seconds)
    try:
        return settlement.run(steps, epoch)
    finally:
        settlement.engine.dispose()


def job(settings: Settings) -> None:
    """The scheduler's settlement job: every step this process has keys for."""
    steps: list[str] = []
    if settings.escrow_settler_private_key:
        steps += SPEND_STEPS
    if settings.payout_settler_private_key:
        steps += POST_STEPS
    if not steps:
        log.info("settlement: no settler key configured; nothing to do")
        return
    settle(settings, steps)


def epoch_rows(
    conn: Connection, chain_id: int, limit: int = 50, before: int | None = None
) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT e.epoch, e.state, e.starts_at, e.ends_at, e.events, e.root_id, e.note,"
            " coalesce(sum(c.charged), 0) AS charged,"
            " coalesce(sum(c.publisher_share), 0) AS publisher_share,"
            " coalesce(sum(c.fee), 0) AS fee, coalesce(sum(c.written_off), 0) AS written_off,"
            " count(c.campaign_id) AS campaigns"
            " FROM settlement_epochs e LEFT JOIN settlement_charges c"
            " ON c.chain_id = e.chain_id AND c.epoch = e.epoch"
            " WHERE e.chain_id = :chain AND (CAST(:before AS bigint) IS NULL OR e.epoch < :before)"
            " GROUP BY e.chain_id, e.epoch ORDER BY e.epoch DESC LIMIT :limit"
        ),
        {"chain": chain_id, "limit": limit, "before": before},
    ).mappings()
    return [{k: int(v) if isinstance(v, Decimal) else v for k, v in r.items()} for r in rows]


@dataclass(frozen=True)
class TokenReconciliation:
    """One token's books: what the newest posted root pays in all (`root_total`) against the
    publisher shares of the epochs it covers (`settled_share`); and the payout's balance
    on-chain against everything funded less everything claimed."""

    token: str
    root_id: int | None
    root_total: int
    settled_share: int
    payout_balance: int
    funded: int
    claimed: int

    @property
    def root_difference(self) -> int:
        return self.root_total - self.settled_share

    @property
    def balance_difference(self) -> int:
        return self.payout_balance - (self.funded - self.claimed)

    @property
    def ok(self) -> bool:
        return self.root_difference == 0 and self.balance_difference == 0


def reconcile(settings: Settings, engine: Engine | None = None) -> list[TokenReconciliation]:
    """The books per token, from the indexer's tables and the chain: the newest posted root's
    totals equal Σ (charged − fee) of the epochs settled into it and the ones before; the
    payout holds exactly Σ funded − Σ claimed. Any difference, to the atomic unit, is an
    error to look into."""
    own_engine = engine is None
    engine = engine or make_engine(settings.database_url)
    rpc = Rpc(settings.rpc_url)
    payout = deployment(settings.chain_id).address("PublisherPayout")
    try:
        with engine.connect() as conn:
            params = {"chain": settings.chain_id}
            root = conn.execute(
                text(
                    "SELECT s.root_id, s.totals FROM settlement_roots s JOIN payout_roots r"
                    " ON r.chain_id = s.chain_id AND r.root_id = s.root_id AND NOT r.revoked"
                    " WHERE s.chain_id = :chain AND s.state = :posted"
                    " ORDER BY s.root_id DESC LIMIT 1"
                ),
                {**params, "posted": POSTED},
            ).first()
            shares: dict[str, int] = {}
            if root is not None:
                for row in conn.execute(
                    text(
                        "SELECT p.token, sum(p.publisher_share) AS share FROM epoch_spends p"
                        " JOIN settlement_epochs e ON e.chain_id = p.chain_id"
                        " AND e.epoch = p.epoch WHERE p.chain_id = :chain"
                        " AND e.root_id BETWEEN 1 AND :root GROUP BY p.token"
                    ),
                    {**params, "root": root.root_id},
                ):
                    shares[row.token.lower()] = int(row.share)
            funded = {
                row.token.lower(): int(row.total_funded)
                for row in conn.execute(
                    text("SELECT token, total_funded FROM payout_funding WHERE chain_id = :chain"),
                    params,
                )
            }
            claimed = {
                row.token.lower(): int(row.paid)
                for row in conn.execute(
                    text(
                        "SELECT token, sum(amount) AS paid FROM payout_claims"
                        " WHERE chain_id = :chain GROUP BY token"
                    ),
                    params,
                )
            }
        totals = {t.lower(): int(v) for t, v in (root.totals if root else {}).items()}
        books = []
        for token in sorted(set(totals) | set(shares) | set(funded)):
            balance = _balance_of(rpc, token, payout)
            books.append(
                TokenReconciliation(
                    token=token,
                    root_id=int(root.root_id) if root else None,
                    root_total=totals.get(token, 0),
                    settled_share=shares.get(token, 0),
                    payout_balance=balance,
                    funded=funded.get(token, 0),
                    claimed=claimed.get(token, 0),
                )
            )
        return books
    finally:
        rpc.close()
        if own_engine:
            engine.dispose()


ETH = "0x" + "00" * 20  # the payout's token address for ether


def _balance_of(rpc: Rpc, token: str, holder: str) -> int:
    if token == ETH:
        return int(rpc.call("eth_getBalance", [holder, "latest"]), 16)
    data = "0x70a08231" + holder[2:].lower().rjust(64, "0")  # balanceOf(address)
    reply = rpc.call("eth_call", [{"to": token, "data": data}, "latest"])
    if reply in (None, "0x"):
        raise SettlementError(f"token {token} answers no balanceOf: is it a token contract?")
    return int(reply, 16)


def reconcile_job(settings: Settings) -> None:
    """The scheduler's reconciliation: logs the books, and an error for any difference."""
    for book in reconcile(settings):
        if book.ok:
            log.info("books of %s balance (root %s)", book.token, book.root_id)
        else:
            log.error(
                "books of %s do not balance: root %s pays %d, settled shares %d (%+d);"
                " payout holds %d, funded − claimed %d (%+d)",
                book.token,
                book.root_id,
                book.root_total,
                book.settled_share,
                book.root_difference,
                book.payout_balance,
                book.funded - book.claimed,
                book.balance_difference,
            )


def campaign_spend(session: Any, chain_id: int, campaign_id: int) -> list[CampaignSpend]:
    rows = session.execute(
        text(
            "SELECT c.*, e.state FROM settlement_charges c JOIN settlement_epochs e"
            " ON e.chain_id = c.chain_id AND e.epoch = c.epoch"
            " WHERE c.chain_id = :chain AND c.campaign_id = :campaign ORDER BY c.epoch DESC"
            " LIMIT 500"
        ),
        {"chain": chain_id, "campaign": campaign_id},
    ).mappings()
    return [CampaignSpend(**{k: row[k] for k in CampaignSpend.model_fields}) for row in rows]


def status(settings: Settings) -> dict[str, Any]:
    """What `python -m api.settlement status` prints: each epoch's and root's state."""
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            epochs = epoch_rows(conn, settings.chain_id)
            roots = [
                dict(r)
                for r in conn.execute(
                    text(
                        "SELECT s.root_id, s.state, s.root, s.epochs, s.totals, s.leaves,"
                        " s.artefact_uri, s.note, r.status AS onchain FROM settlement_roots s"
                        " LEFT JOIN payout_root_status r ON r.chain_id = s.chain_id"
                        " AND r.root_id = s.root_id WHERE s.chain_id = :chain"
                        " ORDER BY s.root_id DESC LIMIT 20"
                    ),
                    {"chain": settings.chain_id},
                ).mappings()
            ]
            txs = [
                dict(r)
                for r in conn.execute(
                    text(
                        "SELECT step, tx_hash, status, block_number, error FROM settlement_txs"
                        " WHERE chain_id = :chain AND status NOT IN ('mined', 'recorded')"
                        " ORDER BY step"
                    ),
                    {"chain": settings.chain_id},
                ).mappings()
            ]
            steps = [
                dict(r)
                for r in conn.execute(
                    text(
                        "SELECT subject, step, inputs, outputs, done_at FROM settlement_steps"
                        " WHERE chain_id = :chain ORDER BY done_at DESC LIMIT 50"
                    ),
                    {"chain": settings.chain_id},
                ).mappings()
            ]
    finally:
        engine.dispose()
    return {"epochs": epochs, "roots": roots, "open_transactions": txs, "steps": steps}
