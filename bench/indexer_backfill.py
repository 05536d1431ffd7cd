"""Backfill benchmark: the indexer's end-to-end events/s (database writes included) beside
the raw `eth_getLogs` fetch and decode rates over the same blocks, measured in the same run.

    .venv/bin/python bench/indexer_backfill.py [--events 100000]

Uses `DATABASE_URL` when set, else an embedded PostgreSQL; starts its own anvil. Prints the
figures and the ratio indexer / (fetch + decode). Peak memory is the indexer process's
maximum resident set size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_abi import decode as abi_decode  # noqa: E402

from chain.contracts import load_abi  # noqa: E402
from chain.decode import Decoder, canonical_type  # noqa: E402
from tests.support import postgres  # noqa: E402
from tests.support.anvil import deploy, start_anvil  # noqa: E402
from tests.support.chain import ChainDriver  # noqa: E402

CHUNK = 2_000  # blocks per eth_getLogs in the raw baseline


def raw_fetch(url: str, addresses: list[str], first: int, last: int) -> tuple[list, float]:
    logs: list = []
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        for start in range(first, last + 1, CHUNK):
            payload = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "eth_getLogs",
                "params": [
                    {
                        "address": addresses,
                        "fromBlock": hex(start),
                        "toBlock": hex(min(start + CHUNK - 1, last)),
                    }
                ],
            }
            logs.extend(json.loads(client.post(url, json=payload).content)["result"])
    return logs, time.perf_counter() - started


def eth_abi_decode(logs: list, decoder: Decoder) -> float:
    """The reference decode: eth_abi for every topic and every data field. Returns seconds."""
    from eth_utils import keccak

    specs = {}
    for name in set(decoder.contract_by_address.values()):
        for item in load_abi(name):
            if item.get("type") == "event":
                types = [canonical_type(i) for i in item["inputs"]]
                topic0 = "0x" + keccak(text=f"{item['name']}({','.join(types)})").hex()
                indexed = [t for t, i in zip(types, item["inputs"], strict=True) if i["indexed"]]
                plain = [t for t, i in zip(types, item["inputs"], strict=True) if not i["indexed"]]
                specs[topic0] = (indexed, plain)
    started = time.perf_counter()
    for log in logs:
        indexed, plain = specs[log["topics"][0]]
        for kind, topic in zip(indexed, log["topics"][1:], strict=True):
            abi_decode([kind], bytes.fromhex(topic[2:]))
        abi_decode(plain, bytes.fromhex(log["data"][2:]))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as scratch,
        start_anvil() as node,
        postgres.database_url() as server,
        postgres.fresh_database(server, prefix="buzzer_bench") as database_url,
    ):
        deployments_dir = Path(scratch)
        deployment = deploy(node.url, deployments_dir)
        chain = ChainDriver(node.url, deployment)
        print(f"generating {args.events:,} events on anvil ...", flush=True)
        started = time.perf_counter()
        report = chain.generate_activity(args.events, seed=1, max_txs_per_block=300)
        head = chain.block_number()
        print(
            f"  {report.events:,} events in {report.blocks:,} blocks "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

        contracts = {address: name for name, address in deployment["contracts"].items()}
        decoder = Decoder(contracts, {name: load_abi(name) for name in contracts.values()})
        logs, fetch_seconds = raw_fetch(node.url, decoder.addresses, 0, head)
        decode_seconds = eth_abi_decode(logs, decoder)
        started = time.perf_counter()
        events = decoder.decode_all(logs)
        own_decode_seconds = time.perf_counter() - started
        count = len(events)

        env = {
            **os.environ,
            "RPC_URL": node.url,
            "DATABASE_URL": database_url,
            "BUZZER_DEPLOYMENTS_DIR": str(deployments_dir),
            "INDEXER_CONFIRMATIONS": "0",
        }
        subprocess.run([sys.executable, "-m", "indexer", "migrate"], cwd=ROOT, env=env, check=True)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "indexer", "run", "--exit-at-head"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.append(process.stderr.read()))
        reader.start()
        # sample the child's resident set (rusage maxrss would count the pre-exec fork of
        # this process, which holds every log of the baseline)
        watched, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, watched.memory_info().rss)
            time.sleep(0.01)
        reader.join()
        wall = time.perf_counter() - started
        stderr = "".join(output)
        if process.returncode != 0:
            raise SystemExit(f"indexer failed:\n{stderr[-2000:]}")
        peak_mb = peak / 2**20
        rates = re.findall(r"(\d+) events, (\d+) events/s", stderr)
        indexed, own_rate = (int(rates[-1][0]), int(rates[-1][1])) if rates else (0, 0)

    fetch_rate = count / fetch_seconds
    decode_rate = count / decode_seconds
    combined = count / (fetch_seconds + decode_seconds)
    print(f"\nevents in range:              {count:,}")
    print(f"raw eth_getLogs fetch:        {fetch_rate:,.0f} events/s")
    print(f"eth_abi decode:               {decode_rate:,.0f} events/s")
    print(f"fetch + eth_abi decode:       {combined:,.0f} events/s")
    print(f"chain.decode (fast path):     {count / own_decode_seconds:,.0f} events/s")
    print(f"indexer end to end:           {own_rate:,} events/s over {indexed:,} events")
    print(f"  (process wall time {wall:.1f} s incl. start-up: {count / wall:,.0f} events/s)")
    print(f"ratio indexer / (fetch + eth_abi decode): {own_rate / combined:.2f}")
    print(f"indexer peak memory (RSS):    {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
