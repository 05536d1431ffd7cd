"""Settlement benchmark: one epoch of `--events` billable events (10 million by default) over
`--publishers` publishers and `--campaigns` campaigns, frozen, charged, allocated and built
into a payout root by `api.settlement.service.Settlement`; and the gas of the epoch's
`spend_batch` and of `post_root` on a real anvil.

    .venv/bin/python bench/settlement_epoch.py [--events 10000000] [--publishers 100000]
        [--campaigns 1000] [--skip-db | --skip-chain]
    .venv/bin/python bench/settlement_epoch.py --quick   # 300,000 events, a minute

Database half: an embedded PostgreSQL (or a fresh database on `DATABASE_URL`'s server),
migrated, then filled with COPY with what freeze and charge read, as the indexer and the
tracking writer leave it: the epoch clock (one-day epochs, as `ape run deploy` sets them),
the indexer checkpoint, `campaigns_onchain`, `escrow_balances`, `PublisherRegistered` (and a
few `PaymentWalletUpdated`) chain events, and the day's `ad_events` partition. Publisher
traffic and campaign popularity are zipf-like; each publisher shows 2 to 8 campaigns; one
campaign in ten is CPC (its clicks are billable), the rest CPM (impressions); bids are the
campaign's serve-time bid. On top of the billable events, `--unbillable` more rows (10 % by
default) that freeze must skip: half IVT-rejected, half of the kind not billed (clicks of
CPM campaigns, impressions of CPC ones). 1 % of the publishers are not registered by the
epoch's end (their events go unpaid). Most campaigns can pay their charge; one in ten is
capped by its balance, one in ten by its max spend. The load is timed apart and is not
part of the figures.

The steps are the service's own methods, called one by one and timed: `freeze`, `charge`,
then the spend's outcome as the indexer would record it (an `epoch_spends` row per campaign
charged what was asked, 85 % to publishers) and `_record_spent` (no Redis: the release of
billed spend is skipped), `allocate`, and `build` (tree over every payee, artefact JSON,
proofs). The RPC the service asks for blocks is a stand-in answering two-second blocks from
a fixed start (`Blocks`): freeze binary-searches it for the epoch's last block (about 20
lookups, a few milliseconds on a real node), so the figures are the database and Python
work alone. Peak memory is this process's resident set during each step (VmHWM, reset
before each step); the PostgreSQL server's memory is not in it.

Chain half: anvil with `ape run deploy` (tests/support/anvil.py), `--campaigns` campaigns
registered and funded by one advertiser (sent with automine off and mined in bulk), the
epoch ended, then `spend_batch` from the settler in batches of `PaymentEscrow.MAX_BATCH`
(256) and `post_root` of trees of `--leaves` leaves (after a one-leaf root that pays for
the payout's first writes). Gas is exact and repeatable; calldata holds campaign ids and
amounts, or a root, never publishers, so neither grows with the number of publishers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402

from api.core.settings import Settings  # noqa: E402
from api.settlement.service import MAX_BATCH, EpochClock, Report, Settlement  # noqa: E402
from api.tracking import partitions  # noqa: E402
from migrations import libpq_url, upgrade  # noqa: E402
from tests.support import postgres  # noqa: E402

CHAIN = 8453  # the database half's chain: Base
EPOCH = 1
EPOCH_LENGTH = 86_400  # scripts/_deploy.py's default
GENESIS = int(datetime(2026, 11, 30, tzinfo=UTC).timestamp())
BLOCK_SECONDS = 2
FIRST_BLOCK_AT = GENESIS - 30 * 86_400  # the chain (and registrations) began a month before
USDC = 10**6
USDC_ADDRESS = "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"
FEE_BPS = 1_500
CPC_SHARE = 0.1
SEED = 7


# --- measuring ----------------------------------------------------------------------------


def reset_peak() -> None:
    """Start a new peak resident set (Linux ≥ 4.0); elsewhere the peak stays the process's."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Figures:
    """Seconds and peak memory of each step, printed as a table at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, str]] = []

    def time(self, name: str, step: Callable[[], Any]) -> float:
        gc.collect()
        reset_peak()
        started = time.perf_counter()
        step()
        seconds = time.perf_counter() - started
        self.rows.append((name, seconds, peak_mib(), ""))
        print(f"  {name}: {seconds:.2f} s")
        return seconds

    def note(self, text: str) -> None:
        name, seconds, peak, _ = self.rows[-1]
        self.rows[-1] = (name, seconds, peak, text)

    def print(self, title: str) -> None:
        print(f"\n{title}")
        print(f"{'step':<34}{'seconds':>10}{'peak MiB':>10}  notes")
        for name, seconds, peak, note in self.rows:
            print(f"{name:<34}{seconds:>10.2f}{peak:>10.0f}  {note}")


# --- the epoch's data -----------------------------------------------------------------------


def address(prefix: int, index: np.ndarray) -> list[str]:
    """Distinct lowercase addresses: a prefix byte and the index, hex."""
    return [f"0x{prefix:02x}{i:038x}" for i in index.tolist()]


class World:
    """Publishers, campaigns and events of one epoch, drawn with a fixed seed."""

    def __init__(self, events: int, publishers: int, campaigns: int, unbillable: float) -> None:
        rng = np.random.default_rng(SEED)
        if events < publishers:
            raise SystemExit("--events must be at least --publishers (each publisher shows ads)")
        self.events, self.publishers, self.campaigns = events, publishers, campaigns
        # campaigns: popularity zipf-like, in random id order; one in ten CPC
        popularity = 1 / np.arange(1, campaigns + 1) ** 0.8
        rng.shuffle(popularity)
        self.cpc = rng.random(campaigns) < CPC_SHARE
        cpm_bid = rng.integers(5, 101, campaigns) * 100_000  # 0.5 to 10 USDC per thousand
        cpc_bid = rng.integers(5, 101, campaigns) * 10_000  # 0.05 to 1 USDC per click
        self.bid = np.where(self.cpc, cpc_bid, cpm_bid)
        self.price = np.where(self.cpc, cpc_bid, cpm_bid // 1000)
        # publishers: traffic zipf-like, at least one billable event each; 2 to 8 campaigns
        traffic = 1 / np.arange(1, publishers + 1) ** 0.9
        rng.shuffle(traffic)
        per_publisher = 1 + rng.multinomial(events - publishers, traffic / traffic.sum())
        shown = rng.integers(2, 9, publishers)
        pair_publisher = np.repeat(np.arange(publishers), shown)
        pair_campaign = rng.choice(
            campaigns, size=len(pair_publisher), p=popularity / popularity.sum()
        )
        pair_weight = rng.exponential(size=len(pair_publisher)) * popularity[pair_campaign]
        starts = np.concatenate(([0], np.cumsum(shown)[:-1]))
        share = pair_weight / np.repeat(np.add.reduceat(pair_weight, starts), shown)
        pair_events = np.floor(share * np.repeat(per_publisher, shown)).astype(np.int64)
        pair_events[starts] += per_publisher - np.add.reduceat(pair_events, starts)
        billable_publisher = np.repeat(pair_publisher, pair_events)
        billable_campaign = np.repeat(pair_campaign, pair_events)
        # unbillable rows on the same pairs: half IVT-rejected, half of the kind not billed
        extra = int(events * unbillable)
        pick = rng.integers(0, events, extra)
        self.publisher = np.concatenate((billable_publisher, billable_publisher[pick]))
        self.campaign = np.concatenate((billable_campaign, billable_campaign[pick]))
        self.billable = np.zeros(events + extra, dtype=bool)
        self.billable[:events] = True
        self.rejected = np.zeros(events + extra, dtype=bool)
        self.rejected[events : events + extra // 2] = True
        order = rng.permutation(events + extra)  # the events arrive mixed, in time order
        self.publisher, self.campaign = self.publisher[order], self.campaign[order]
        self.billable, self.rejected = self.billable[order], self.rejected[order]
        self.offset_us = np.sort(rng.integers(0, EPOCH_LENGTH * 1_000_000, events + extra))
        self.pairs = int(np.count_nonzero(pair_events))
        # what each campaign's billable events come to, for balances and max spends
        bid_sum = np.bincount(
            billable_campaign, weights=self.bid[billable_campaign], minlength=campaigns
        )
        charge = np.where(self.cpc, bid_sum, bid_sum // 1000).astype(np.int64)
        fate = rng.random(campaigns)
        self.balance = np.where(fate < 0.1, charge // 2, 2 * charge + 100 * USDC)
        self.max_spend = np.where((fate >= 0.1) & (fate < 0.2), charge // 3 + 1, 10**12)
        # registrations: 1 % never, 2 % change wallet within the epoch, 1 % after its end
        self.registered = rng.random(publishers) >= 0.01
        self.moved = rng.random(publishers)
        self.publisher_address = address(0xA0, np.arange(publishers))

    @property
    def rows(self) -> int:
        return len(self.publisher)


class Blocks:
    """The RPC as freeze and build use it: block n was made at FIRST_BLOCK_AT + 2n s."""

    def __init__(self, head: int) -> None:
        self.head = head

    def block(self, number: int | str) -> dict[str, Any] | None:
        n = self.head if number in ("latest", "finalized") else int(number)
        if n > self.head:
            return None
        return {
            "number": hex(n),
            "hash": "0x" + keccak(n.to_bytes(32, "big")).hex(),
            "timestamp": hex(FIRST_BLOCK_AT + BLOCK_SECONDS * n),
        }


def block_at(timestamp: int) -> int:
    return (timestamp - FIRST_BLOCK_AT) // BLOCK_SECONDS


def copy_rows(
    conn: psycopg.Connection[Any], table: str, columns: str, lines: Iterator[str]
) -> None:
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for chunk in lines:
            copy.write(chunk)


def event_lines(world: World, chunk: int = 500_000) -> Iterator[str]:
    """ad_events rows in COPY text format, `chunk` at a time."""
    start = np.datetime64(GENESIS, "s").astype("datetime64[us]")
    publisher = [f"slot-{i % 3}\t{a}" for i, a in enumerate(world.publisher_address)]
    terms = [
        f"{USDC_ADDRESS}\t{'cpc' if cpc else 'cpm'}\t{bid}\t{price}"
        for cpc, bid, price in zip(
            world.cpc.tolist(), world.bid.tolist(), world.price.tolist(), strict=True
        )
    ]
    cpc = world.cpc.tolist()
    for lo in range(0, world.rows, chunk):
        hi = min(lo + chunk, world.rows)
        times = np.datetime_as_string(start + world.offset_us[lo:hi], unit="us").tolist()
        lines = []
        for i, at, p, c, billable, rejected in zip(
            range(lo, hi),
            times,
            world.publisher[lo:hi].tolist(),
            world.campaign[lo:hi].tolist(),
            world.billable[lo:hi].tolist(),
            world.rejected[lo:hi].tolist(),
            strict=True,
        ):
            # the billable kind (clicks of CPC campaigns), or the other one
            kind = "click" if cpc[c] == (billable or rejected) else "impression"
            verdict = "f\tdatacenter" if rejected else "t\t\\N"
            lines.append(
                f"{i:024x}-{kind[0]}\t{at}Z\t{kind}\t{verdict}\t{CHAIN}\t{i:024x}\t{c + 1}"
                f"\t{publisher[p]}\t{terms[c]}\n"
            )
        yield "".join(lines)


EVENT_COLUMNS = (
    "event_id, occurred_at, kind, verified, reason, chain_id, serve_id, campaign_id, slot_id,"
    " publisher, token, bid_model, bid, price"
)


def registration_lines(world: World) -> Iterator[str]:
    """PublisherRegistered for registered publishers, and the wallet changes."""
    rng = np.random.default_rng(SEED + 1)
    end_block = block_at(GENESIS + EPOCH_LENGTH) - 1
    registered_at = rng.integers(1, block_at(GENESIS), world.publishers).tolist()
    moved_at = rng.integers(block_at(GENESIS), end_block, world.publishers).tolist()
    registry = "0x" + "11" * 20
    lines = []
    for p, publisher in enumerate(world.publisher_address):
        if not world.registered[p]:
            continue
        wallet = f"0xb0{p:038x}"
        events = [(registered_at[p], "PublisherRegistered", {"payment_wallet": wallet})]
        if world.moved[p] < 0.03:  # within the epoch (0-2 %) or after its end (2-3 %)
            block = moved_at[p] if world.moved[p] < 0.02 else end_block + 100 + p % 1000
            new = {"old_wallet": wallet, "new_wallet": f"0xc0{p:038x}"}
            events.append((block, "PaymentWalletUpdated", new))
        for block, name, args in events:
            tx = keccak(f"{p}:{name}".encode()).hex()
            lines.append(
                f"{CHAIN}\t{block}\t0x{block:064x}\t0x{tx}\t0\t{p}\tPublisherRegistry\t{registry}"
                f"\t{name}\t{publisher}\t{json.dumps({'publisher': publisher, **args})}\ttrue\n"
            )
    yield "".join(lines)


def load(database_url: str, world: World) -> int:
    """Everything freeze and charge read; returns the finalized block."""
    finalized = block_at(GENESIS + EPOCH_LENGTH + 3_600)  # the IVT hold later
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        partitions.ensure(conn, [datetime.fromtimestamp(GENESIS, UTC).date()])
        conn.execute(
            "INSERT INTO chain_config (chain_id, contract, event, args, block_number)"
            " VALUES (%s, 'CampaignRegistry', 'EpochClockSet', %s, 1)",
            [CHAIN, json.dumps({"genesis": GENESIS, "epoch_length": EPOCH_LENGTH})],
        )
        block = Blocks(finalized).block(finalized)
        assert block is not None
        conn.execute(
            "INSERT INTO indexer_checkpoints (chain_id, block_number, block_hash, block_timestamp,"
            " finalized_block, head_block) VALUES (%s, %s, %s, %s, %s, %s)",
            [CHAIN, finalized, block["hash"], int(block["timestamp"], 16), finalized, finalized],
        )
        advertiser = "0x" + "ad" * 20
        copy_rows(
            conn,
            "campaigns_onchain",
            "chain_id, campaign_id, advertiser, token, bid_model, bid, metadata_hash, status,"
            " registered_block, max_spend_per_epoch, previous_max_spend_per_epoch,"
            " max_spend_effective_epoch",
            iter(
                [
                    "".join(
                        f"{CHAIN}\t{c + 1}\t{advertiser}\t{USDC_ADDRESS}\t{int(world.cpc[c])}"
                        f"\t{world.bid[c]}\t0x{c:064x}\t1\t1\t{world.max_spend[c]}\t0\t0\n"
                        for c in range(world.campaigns)
                    )
                ]
            ),
        )
        copy_rows(
            conn,
            "escrow_balances",
            "chain_id, campaign_id, token, deposited, withdrawn, spent, balance, last_spent_epoch",
            iter(
                [
                    "".join(
                        f"{CHAIN}\t{c + 1}\t{USDC_ADDRESS}\t{b}\t0\t0\t{b}\t0\n"
                        for c, b in enumerate(world.balance.tolist())
                    )
                ]
            ),
        )
        copy_rows(
            conn,
            "chain_events",
            "chain_id, block_number, block_hash, tx_hash, tx_index, log_index, contract,"
            " address, event, subject, args, canonical",
            registration_lines(world),
        )
        started = time.perf_counter()
        done = 0
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY ad_events ({EVENT_COLUMNS}) FROM STDIN") as copy,
        ):
            for chunk in event_lines(world):
                copy.write(chunk)
                done += chunk.count("\n")
                if done % 2_000_000 < 500_000:
                    rate = done / (time.perf_counter() - started)
                    print(f"  ad_events {done:>12,} ({rate:,.0f} rows/s)")
        conn.execute("VACUUM ANALYZE")
    return finalized


def simulate_spend(database_url: str) -> int:
    """What the indexer records once spend_batch is final: each campaign charged what was
    asked (the ask is already capped as the escrow caps), 85 % to publishers."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        cursor = conn.execute(
            "INSERT INTO epoch_spends (chain_id, epoch, campaign_id, token, charged,"
            " publisher_share, fee, block_number, asked)"
            " SELECT chain_id, epoch, campaign_id, token, asked, div(asked * %s, 10000),"
            " asked - div(asked * %s, 10000), %s, asked FROM settlement_charges"
            " WHERE chain_id = %s AND epoch = %s AND asked > 0",
            [
                10_000 - FEE_BPS,
                10_000 - FEE_BPS,
                block_at(GENESIS + EPOCH_LENGTH) + 10,
                CHAIN,
                EPOCH,
            ],
        )
        return cursor.rowcount


def scalar(database_url: str, query: str) -> Any:
    with psycopg.connect(libpq_url(database_url)) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def run_database(args: argparse.Namespace, scratch: Path) -> None:
    print(
        f"database: {args.events:,} billable events (+{args.unbillable:.0%} unbillable),"
        f" {args.publishers:,} publishers, {args.campaigns:,} campaigns"
    )
    (scratch / f"{CHAIN}.json").write_text(
        json.dumps(
            {
                "chain_id": CHAIN,
                "start_block": 1,
                "contracts": {
                    name: to_checksum_address(f"0x{n + 1:040x}")
                    for n, name in enumerate(
                        (
                            "PublisherRegistry",
                            "CampaignRegistry",
                            "PaymentEscrow",
                            "PublisherPayout",
                        )
                    )
                },
            }
        )
    )
    with (
        postgres.database_url() as server,
        postgres.fresh_database(server, prefix="buzzer_bench") as database_url,
    ):
        upgrade(database_url)
        started = time.perf_counter()
        world = World(args.events, args.publishers, args.campaigns, args.unbillable)
        drawn = time.perf_counter() - started
        print(
            f"  drew {world.rows:,} rows ({world.pairs:,} campaign-publisher pairs)"
            f" in {drawn:.1f} s"
        )
        finalized = load(database_url, world)
        loaded = time.perf_counter() - started
        day = partitions.partition_name(datetime.fromtimestamp(GENESIS, UTC).date())
        size = scalar(database_url, f"SELECT pg_size_pretty(pg_total_relation_size('{day}'))")
        print(f"  loaded in {loaded:.1f} s ({world.rows / loaded:,.0f} rows/s; ad_events {size})")
        rows, billable = world.rows, world.events
        del world
        gc.collect()

        settings = Settings(
            DATABASE_URL=database_url,
            CHAIN_ID=CHAIN,
            RPC_URL="http://127.0.0.1:9",  # never asked: `Blocks` answers
            REDIS_URL="",  # no Redis: the release of billed spend is skipped
            settlement_artefact_dir=str(scratch / "artefacts"),
        )
        settlement = Settlement(settings, rpc=Blocks(finalized))  # type: ignore[arg-type]
        clock = EpochClock(GENESIS, EPOCH_LENGTH)
        report = Report()
        figures = Figures()

        seconds = figures.time("freeze", lambda: settlement.freeze(EPOCH, clock, finalized, report))
        weights = scalar(database_url, "SELECT count(*) FROM settlement_allocations")
        figures.note(
            f"{rows / seconds:,.0f} ad_events rows/s ({billable / seconds:,.0f} billable/s);"
            f" {weights:,} campaign-wallet weights"
        )
        figures.time("charge", lambda: settlement.charge(EPOCH, report))
        figures.note(report.done[-1].split(": ", 1)[1])
        spent = simulate_spend(database_url)
        figures.time(
            "record spent (_record_spent)", lambda: settlement._record_spent(EPOCH, report)
        )
        figures.note(f"{spent:,} Spent rows; " + report.done[-1].split(": ", 1)[1])
        figures.time("allocate", lambda: settlement.allocate(EPOCH, report))
        figures.note(report.done[-1].split(": ", 1)[1])
        figures.time("build (tree, artefact, proofs)", lambda: settlement.build(report))
        artefact = settlement.artefact_path(1)
        if artefact.exists():
            leaves = report.done[-1].split(", ")[1]
            figures.note(f"{leaves}; artefact {artefact.stat().st_size / 2**20:,.0f} MiB")
        settlement.engine.dispose()
        figures.print(f"settlement of one epoch ({rows:,} ad_events rows, {billable:,} billable)")


# --- gas on-chain ---------------------------------------------------------------------------


def run_chain(args: argparse.Namespace, scratch: Path) -> None:
    from api.settlement.merkle import Leaf
    from tests.support.anvil import deploy, start_anvil
    from tests.support.chain import ADMIN, BID_CPM, FIRST_USER, ChainDriver

    campaigns = args.campaigns
    print(f"\nchain: {campaigns:,} campaigns, spend_batch in batches of {MAX_BATCH}")
    with start_anvil() as node:
        started = time.perf_counter()
        deployment = deploy(node.url, scratch)
        driver = ChainDriver(node.url, deployment)
        print(f"  deployed in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        advertiser = FIRST_USER
        escrow = driver.addresses["PaymentEscrow"]
        deposit, max_spend = 100 * USDC, 1_000 * USDC
        first = int(driver.call("CampaignRegistry", "campaign_count")) + 1
        requests = [
            driver.tx_request(
                "TestUSDC", "mint", driver.account(advertiser), deposit * campaigns, sender=ADMIN
            ),
            driver.tx_request(
                "TestUSDC", "approve", escrow, deposit * campaigns, sender=advertiser
            ),
        ]
        for n in range(campaigns):
            requests.append(
                driver.tx_request(
                    "CampaignRegistry", "register", driver.usdc, BID_CPM, 2 * USDC,
                    keccak(n.to_bytes(32, "big")), max_spend, sender=advertiser,
                )
            )  # fmt: skip
            requests.append(
                driver.tx_request(
                    "PaymentEscrow", "deposit", first + n, deposit, driver.usdc, sender=advertiser
                )
            )
        node.call("evm_setAutomine", False)
        hashes = [node.call("eth_sendTransaction", request) for request in requests]
        while int(node.call("txpool_status")["pending"], 16):
            node.call("anvil_mine", hex(1))
        node.call("evm_setAutomine", True)
        receipts = node.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        failed = [r["transactionHash"] for r in receipts if r is None or r["status"] != "0x1"]
        if failed:
            raise SystemExit(f"{len(failed)} set-up transactions failed, e.g. {failed[0]}")
        print(
            f"  {len(hashes):,} set-up transactions in {time.perf_counter() - started:.1f} s"
            " (register and deposit each campaign)"
        )

        epoch = driver.current_epoch()
        driver.end_epoch(epoch)
        rng = np.random.default_rng(SEED)
        asked = (rng.integers(1, 50, campaigns) * USDC).tolist()
        ids = list(range(first, first + campaigns))
        rows: list[tuple[str, int, str]] = []
        spent_gas = 0
        sizes: dict[int, int] = {}
        for lo in range(0, campaigns, MAX_BATCH):
            batch = ids[lo : lo + MAX_BATCH]
            receipt = driver.spend_batch(epoch, batch, asked[lo : lo + MAX_BATCH])
            gas = int(receipt["gasUsed"])
            spent_gas += gas
            sizes[len(batch)] = gas
            rows.append(
                (
                    f"spend_batch ({len(batch)} campaigns)",
                    gas,
                    f"{gas // len(batch):,} per campaign"
                    + ("; the first spend ever (cold storage)" if lo == 0 else ""),
                )
            )
        rows.append(
            (
                f"spend_batch, all {campaigns:,}",
                spent_gas,
                f"{spent_gas // campaigns:,} per campaign",
            )
        )
        if len(sizes) > 1:
            (small, g_small), (big, g_big) = sorted(sizes.items())[:2]
            marginal = (g_big - g_small) // (big - small)
            rows.append(
                (
                    "  each further campaign",
                    marginal,
                    f"from the {small}- and {big}-campaign batches",
                )
            )
            rows.append(("  fixed part of a batch", g_big - marginal * big, ""))

        funded = int(driver.call("PublisherPayout", "total_funded", driver.usdc))
        challenge = int(driver.call("PublisherPayout", "challenge_period"))
        for n, (size, total) in enumerate(
            [(1, funded // 4)]
            + [(s, funded * (k + 2) // (len(args.leaves) + 1)) for k, s in enumerate(args.leaves)]
        ):
            started = time.perf_counter()
            leaves = [
                Leaf(f"0x{0xE0:02x}{i:038x}", driver.usdc, total // size + (i < total % size))
                for i in range(size)
            ]
            tree = driver.payout_tree(leaves)
            built = time.perf_counter() - started
            if n:
                driver.increase_time(challenge)
            receipt = driver.post_root(tree)
            label = "first root ever (warms storage)" if n == 0 else f"tree built in {built:.1f} s"
            named = f"{size:,} {'leaf' if size == 1 else 'leaves'}"
            rows.append((f"post_root ({named})", int(receipt["gasUsed"]), label))

    print(f"\n{'transaction':<34}{'gas':>12}  notes")
    for name, gas, note in rows:
        print(f"{name:<34}{gas:>12,}  {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="billable events")
    parser.add_argument("--publishers", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=1_000)
    parser.add_argument(
        "--unbillable", type=float, default=0.1, help="rows freeze skips, as a share of --events"
    )
    parser.add_argument(
        "--leaves", type=int, nargs="+", default=[1_000, 100_000], help="post_root tree sizes"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="300,000 events, 10,000 publishers, 300 campaigns, trees of 1,000 and 10,000",
    )
    parser.add_argument("--skip-db", action="store_true", help="only the gas on-chain")
    parser.add_argument("--skip-chain", action="store_true", help="only the database steps")
    args = parser.parse_args()
    if args.quick:
        args.events, args.publishers, args.campaigns = 300_000, 10_000, 300
        args.leaves = [1_000, 10_000]

    with tempfile.TemporaryDirectory(prefix="buzzer-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        os.environ["BUZZER_DEPLOYMENTS_DIR"] = str(scratch)  # the database half's deployment
        if not args.skip_db:
            run_database(args, scratch)
        if not args.skip_chain:
            run_chain(args, scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
