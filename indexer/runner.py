"""The indexer loop: follow the contracts from their start block to the head and then live,
one committed transaction per block range, detecting reorgs by parent hash inside the
unfinalized window and rewinding to the common ancestor."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from catalog_version import SERVING_CONTRACTS, Notifier
from chain.contracts import ContractsError, load_abi, load_deployment, payment_token_address
from chain.decode import Decoder, Event
from chain.rpc import RangeTooLarge, Rpc
from indexer import payments, store
from indexer.payments import ChainChanged, PaymentToken
from indexer.settings import ConfigError, Settings
from indexer.store import BlockHeader, Checkpoint
from observe import metrics

log = logging.getLogger("indexer")

PROGRESS_EVERY = 2.0


class ReorgTooDeep(Exception):
    """The chain changed below the unfinalized window: the indexer must not guess."""


__all__ = ["ChainChanged", "Indexer", "ReorgTooDeep"]


@dataclass
class Progress:
    started: float
    last_report: float
    blocks: int = 0
    events: int = 0
    reported_block: int = -1

    def report(self, at_block: int, head: int, force: bool = False) -> None:
        """Log progress every few seconds, and once on reaching the head (not while idle)."""
        now = time.monotonic()
        if at_block == self.reported_block or (
            not force and now - self.last_report < PROGRESS_EVERY
        ):
            return
        self.reported_block = at_block
        elapsed = max(now - self.started, 1e-9)
        log.info(
            "indexed to block %d of %d (lag %d): %d events, %.0f events/s, %.0f blocks/s",
            at_block,
            head,
            head - at_block,
            self.events,
            self.events / elapsed,
            self.blocks / elapsed,
        )
        self.last_report = now


@dataclass(frozen=True)
class RangeRead:
    first: int
    last: int
    head: int
    events: list[Event]
    headers: list[BlockHeader]
    tip: BlockHeader


class Indexer:
    def __init__(self, settings: Settings, rpc: Rpc | None = None) -> None:
        self.settings = settings
        self.rpc = rpc or Rpc(settings.rpc_url)
        # the next range is read on a thread of its own while the current one is written
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer-read")
        self._reader_rpc = Rpc(settings.rpc_url)
        self._prefetched: tuple[int, Future[RangeRead]] | None = None
        self.chain_id = self.rpc.chain_id()
        self.notifier = Notifier(settings.redis_url)
        if settings.chain_id is not None and settings.chain_id != self.chain_id:
            raise ConfigError(
                f"CHAIN_ID is {settings.chain_id} but the RPC at {settings.rpc_url} "
                f"serves chain {self.chain_id}"
            )
        deployment = load_deployment(self.chain_id)
        token = payment_token_address(deployment, settings.payment_token)
        # the payment token is read by payment wallet (indexer/payments.py), not in full
        contracts = {
            address: name for name, address in deployment.contracts.items() if address != token
        }
        try:
            self.decoder = Decoder(contracts, {name: load_abi(name) for name in contracts.values()})
        except KeyError as exc:
            raise ContractsError(f"no ABI for {exc}") from None
        self.start_block = (
            settings.start_block if settings.start_block is not None else deployment.start_block
        )
        self.payments = (
            None
            if token is None
            else PaymentToken(
                token,
                self.start_block
                if settings.payment_start_block is None
                else settings.payment_start_block,
            )
        )
        self.conn = store.connect(settings.database_url)
        self.range_size = settings.initial_range

    def close(self) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)
        self.conn.close()
        self.rpc.close()
        self._reader_rpc.close()

    # ---------------------------------------------------------------- chain reads

    def _finalized(self, head: int) -> int:
        tagged = self.rpc.finalized_block()
        fallback = max(head - self.settings.confirmations, 0)
        return fallback if tagged is None else min(tagged, head)

    def _fetch(self, first: int, last: int, rpc: Rpc | None = None) -> tuple[list[Event], int]:
        """Logs of [first, last], shrinking the range while the node refuses it.
        Returns the decoded events and the last block actually covered."""
        rpc = rpc or self.rpc
        while True:
            try:
                logs = rpc.get_logs(self.decoder.addresses, first, last)
            except RangeTooLarge:
                if last == first:
                    raise
                last = first + (last - first) // 2
                self.range_size = max(1, last - first + 1)
                continue
            # aim the next range at `target_logs`: memory and transaction size stay bounded
            covered = last - first + 1
            wanted = covered * self.settings.target_logs // max(len(logs), 1)
            self.range_size = max(1, min(self.settings.max_range, wanted, covered * 2))
            return self.decoder.decode_all(logs), last

    def _headers(self, numbers: Sequence[int], rpc: Rpc | None = None) -> list[BlockHeader]:
        headers: list[BlockHeader] = []
        for start in range(0, len(numbers), 100):
            for block in (rpc or self.rpc).blocks(numbers[start : start + 100]):
                if block is None:
                    raise ChainChanged("a block in the range disappeared")
                headers.append(BlockHeader.from_rpc(block))
        return headers

    # ---------------------------------------------------------------- reorgs

    def _check_reorg(self, checkpoint: Checkpoint) -> Checkpoint:
        """If the checkpoint block is no longer canonical, rewind to the common ancestor."""
        window = store.window_blocks(self.conn, self.chain_id)
        if checkpoint.block_number not in window:
            return checkpoint
        current = self.rpc.block(checkpoint.block_number)
        if current is not None and current["hash"].lower() == checkpoint.block_hash:
            return checkpoint
        numbers = sorted(window, reverse=True)
        for start in range(0, len(numbers), 100):
            chunk = numbers[start : start + 100]
            for number, block in zip(chunk, self.rpc.blocks(chunk), strict=True):
                if block is not None and block["hash"].lower() == window[number]:
                    ancestor = BlockHeader.from_rpc(block)
                    orphaned = store.rewind(
                        self.conn, self.chain_id, ancestor, checkpoint.finalized_block
                    )
                    metrics.INDEXER_REORGS.inc()
                    metrics.INDEXER_ORPHANED.inc(orphaned)
                    log.warning(
                        "reorg: blocks %d..%d replaced; rewound to %d (%s), %d events orphaned",
                        ancestor.number + 1,
                        checkpoint.block_number,
                        ancestor.number,
                        ancestor.hash,
                        orphaned,
                    )
                    loaded = store.load_checkpoint(self.conn, self.chain_id)
                    assert loaded is not None
                    self.notifier.changed()
                    return loaded
        oldest = numbers[-1]
        raise ReorgTooDeep(
            f"chain {self.chain_id} reorganised deeper than the {self.settings.reorg_window}-block"
            f" window: indexed blocks {oldest}..{checkpoint.block_number} are all replaced"
            f" (block {oldest} was {window[oldest]}); re-index from a block below {oldest}"
        )

    # ---------------------------------------------------------------- forward indexing

    def _initial_checkpoint(self) -> Checkpoint:
        existing = store.load_checkpoint(self.conn, self.chain_id)
        if existing is not None:
            return existing
        before = max(self.start_block - 1, 0)
        block = self.rpc.block(before)
        if block is None:
            raise ConfigError(f"start block {self.start_block} is beyond the chain head")
        header = BlockHeader.from_rpc(block)
        return Checkpoint(before, header.hash, header.timestamp, 0, before)

    def _read(self, first: int, last: int, head: int, rpc: Rpc) -> RangeRead:
        """Everything one range needs from the node: its events, and the headers of its
        blocks inside the unfinalized window (plus its last block's)."""
        events, last = self._fetch(first, last, rpc)
        window_floor = head - self.settings.reorg_window + 1
        headers = self._headers(list(range(max(first, window_floor), last + 1)), rpc)
        tip = headers[-1] if headers and headers[-1].number == last else None
        tip = tip or self._headers([last], rpc)[0]
        return RangeRead(first, last, head, self._cross_check(events, headers, rpc), headers, tip)

    def _cross_check(
        self, events: list[Event], headers: Sequence[BlockHeader], rpc: Rpc
    ) -> list[Event]:
        """A node may answer eth_getLogs with nothing for blocks that hold our logs. Inside
        the window each block's bloom filter says whether it may: such a block is asked again
        on its own (by hash) before its emptiness is believed."""
        with_logs = {e.block_number for e in events}
        missed: list[Event] = []
        for header in headers:
            if header.number in with_logs or not header.may_have_logs_of(self.decoder.addresses):
                continue
            logs = rpc.call(
                "eth_getLogs", [{"address": self.decoder.addresses, "blockHash": header.hash}]
            )
            if logs:
                log.warning("node omitted %d logs of block %d; recovered", len(logs), header.number)
                missed.extend(self.decoder.decode_all(logs))
        if not missed:
            return events
        return sorted(events + missed, key=lambda e: e.order)

    def step(self, checkpoint: Checkpoint, head: int, stop_at: int) -> tuple[Checkpoint, int]:
        """Index the next range after `checkpoint`; returns the new checkpoint and the number
        of events it held. The range after it is read in the background meanwhile."""
        first = checkpoint.block_number + 1
        read = self._take_prefetched(first, stop_at)
        if read is None:
            read = self._read(first, min(first + self.range_size - 1, stop_at), head, self.rpc)
        if read.last < stop_at:
            self._prefetch(read.last + 1, min(read.last + self.range_size, stop_at), head)
        by_number = {h.number: h for h in read.headers}
        if first in by_number and by_number[first].parent_hash != checkpoint.block_hash:
            self._prefetched = None
            raise ChainChanged(f"block {first} does not extend the indexed block {first - 1}")
        for event in read.events:
            header = by_number.get(event.block_number)
            if header is not None and header.hash != event.block_hash:
                self._prefetched = None
                raise ChainChanged(f"block {event.block_number} changed while it was read")
        events, backfills = self._with_payments(read, by_number)
        tip = read.tip
        new = Checkpoint(
            tip.number, tip.hash, tip.timestamp, min(self._finalized(head), tip.number), head
        )
        store.write_range(
            self.conn,
            self.chain_id,
            events,
            read.headers,
            new,
            self.settings.reorg_window,
            backfills,
            self.payments.start_block if self.payments else 0,
        )
        if any(event.contract in SERVING_CONTRACTS for event in read.events):
            self.notifier.changed()
        return new, len(read.events)

    def _with_payments(
        self, read: RangeRead, by_number: dict[int, BlockHeader]
    ) -> tuple[list[Event], dict[str, int]]:
        """The range's events with the payment token's for the wallets followed before it
        (read now, not prefetched: the range before may have changed the wallets), and the
        wallets whose history is to be backfilled."""
        if self.payments is None:
            return read.events, {}
        followed = store.followed_wallets(self.conn, self.chain_id)
        token_events = self.payments.cross_check(
            self.rpc,
            self.payments.fetch(self.rpc, followed, read.first, read.last),
            read.headers,
            followed,
        )
        for event in token_events:
            header = by_number.get(event.block_number)
            if header is not None and header.hash != event.block_hash:
                self._prefetched = None
                raise ChainChanged(f"block {event.block_number} changed while it was read")
        touched = payments.touched_wallets(read.events)
        changes = payments.wallet_changes(
            read.events, store.publishers_per_wallet(self.conn, self.chain_id, touched), read.last
        )
        if not token_events:
            return read.events, changes.backfill
        kept = payments.without_dropped(token_events, changes.dropped)
        return sorted(read.events + kept, key=lambda e: e.order), changes.backfill

    def backfill_payments(self, checkpoint: Checkpoint, drain: bool) -> int:
        """Read on the history of newly known payment wallets (one chunk, or every chunk
        when `drain`), never past `checkpoint`; the number of events stored."""
        if self.payments is None:
            return 0
        stored = 0
        while True:
            jobs = [
                job
                for job in store.pending_backfills(self.conn, self.chain_id)
                if job.next_block <= checkpoint.block_number
            ]
            if not jobs:
                return stored
            # wallets at the same point are read together
            first = jobs[0].next_block
            group = [job for job in jobs if job.next_block == first]
            last = min(min(job.last_block for job in group), checkpoint.block_number)
            upto = min(first + self.settings.max_range - 1, last)
            wallets = [job.wallet for job in group]
            events = self.payments.fetch(self.rpc, wallets, first, upto)
            floor = checkpoint.head_block - self.settings.reorg_window + 1
            if upto >= floor:  # the bloom check of the unfinalized window, as going forward
                headers = self._headers(list(range(max(first, floor), upto + 1)))
                events = self.payments.cross_check(self.rpc, events, headers, wallets)
            store.write_backfill(self.conn, self.chain_id, events, wallets, upto)
            log.info(
                "payment history of %d wallet(s): blocks %d..%d, %d events",
                len(wallets),
                first,
                upto,
                len(events),
            )
            stored += len(events)
            if not drain:
                return stored

    def _prefetch(self, first: int, last: int, head: int) -> None:
        future = self._reader.submit(self._read, first, last, head, self._reader_rpc)
        self._prefetched = (first, future)

    def _take_prefetched(self, first: int, stop_at: int) -> RangeRead | None:
        if self._prefetched is None:
            return None
        expected, future = self._prefetched
        self._prefetched = None
        read = future.result()
        return read if expected == first and read.last <= stop_at else None

    def run(self, until_head: bool = False, stop_at: int | None = None) -> Checkpoint:
        checkpoint = self._initial_checkpoint()
        now = time.monotonic()
        progress = Progress(now, now)
        log.info(
            "chain %d: following %d contracts from block %d (checkpoint %d)",
            self.chain_id,
            len(self.decoder.addresses),
            self.start_block,
            checkpoint.block_number,
        )
        while True:
            head = self.rpc.block_number()
            target = head if stop_at is None else min(head, stop_at)
            checkpoint = self._check_reorg(checkpoint)
            _observe(checkpoint, head)
            if checkpoint.block_number >= target:
                self.backfill_payments(checkpoint, drain=True)
                progress.report(checkpoint.block_number, head, force=True)
                if until_head or stop_at is not None:
                    return checkpoint
                time.sleep(self.settings.poll_seconds)
                continue
            try:
                new, count = self.step(checkpoint, head, target)
            except ChainChanged as exc:
                log.warning("%s; re-reading", exc)
                checkpoint = self._check_reorg(checkpoint)
                continue
            progress.blocks += new.block_number - checkpoint.block_number
            progress.events += count
            metrics.INDEXER_EVENTS.inc(count)
            checkpoint = new
            _observe(checkpoint, head)
            progress.events += self.backfill_payments(checkpoint, drain=False)
            progress.report(checkpoint.block_number, head)

    # ---------------------------------------------------------------- backfill

    def backfill(self, first: int, last: int) -> Checkpoint:
        """Re-index [first, last]: blocks already indexed are read again and their
        projections refolded (idempotent); blocks beyond the checkpoint are indexed forward."""
        if first > last:
            raise ConfigError(f"--from {first} is after --to {last}")
        checkpoint = self._initial_checkpoint()
        checkpoint = self._check_reorg(checkpoint)
        if first > checkpoint.block_number + 1:
            raise ConfigError(
                f"--from {first} would leave a gap: indexed up to block {checkpoint.block_number}"
            )
        head = self.rpc.block_number()
        block = first
        while block <= min(last, checkpoint.block_number):
            upto = min(block + self.range_size - 1, last, checkpoint.block_number)
            events, upto = self._fetch(block, upto)
            store.reindex(self.conn, self.chain_id, events)
            log.info("re-indexed blocks %d..%d: %d events", block, upto, len(events))
            block = upto + 1
        if self.payments is not None:
            # then the token's, once the registry's events are all there: every wallet ever
            # known, up to the block it stopped being one
            limits = store.payment_wallet_limits(self.conn, self.chain_id)
            dropped = {w: until for w, until in limits.items() if until is not None}
            block, end = first, min(last, checkpoint.block_number)
            while block <= end:
                upto = min(block + self.settings.max_range - 1, end)
                fetched = self.payments.fetch(self.rpc, limits, block, upto)
                store.reindex(self.conn, self.chain_id, payments.without_dropped(fetched, dropped))
                block = upto + 1
        if last > checkpoint.block_number:
            return self.run(stop_at=min(last, head))
        return checkpoint


def _observe(checkpoint: Checkpoint, head: int) -> None:
    metrics.INDEXER_HEAD.set(head)
    metrics.INDEXER_BLOCK.set(checkpoint.block_number)
    metrics.INDEXER_LAG.set(max(head - checkpoint.block_number, 0))
