"""Payout tree benchmark: building a cumulative-earnings tree and every proof in it, beside
the hashing floor measured in the same run (two keccaks per leaf plus one per inner node,
with the same keccak over inputs made beforehand, so nothing but hashing is timed).

    .venv/bin/python bench/settlement_tree.py [--leaves 1000000] [--tokens 2] [--checksummed]
                                              [--dump]

One leaf per wallet and token. Addresses are lowercase as Postgres stores them (checksummed
with --checksummed, which makes the build verify every checksum). Prints CPU seconds (the
machine is shared; wall seconds beside them) and each figure's ratio to the floor; the floor
is the faster of two runs after the tree, so the ratio errs against the tree. `.leaves`
(checksummed, what the dump needs) is timed apart: the proofs stream the leaves as given.
Peak memory is the process's maximum resident set size, input included.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_abi import encode  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402

from api.settlement.merkle import LEAF_TYPES, Leaf, PayoutTree, keccak_many  # noqa: E402

CHAIN_ID = 8453
OLD_SAMPLE = 20_000  # leaves hashed the old way (eth_abi.encode), extrapolated
T = TypeVar("T")


def make_leaves(count: int, tokens: int, checksummed: bool, rng: random.Random) -> list[Leaf]:
    address = to_checksum_address if checksummed else (lambda raw: "0x" + raw.hex())
    token_addresses = [address(rng.randbytes(20)) for _ in range(tokens)]
    leaves: list[Leaf] = []
    while len(leaves) < count:
        wallet = address(rng.randbytes(20))
        for token in token_addresses[: count - len(leaves)]:
            leaves.append(Leaf(wallet, token, rng.randrange(0, 10**24)))
    return leaves


def hashing_floor(count: int, rng: random.Random) -> float:
    encodings = [rng.randbytes(160) for _ in range(count)]
    pairs = [rng.randbytes(64) for _ in range(count - 1)]
    started = time.process_time()
    leaf_hashes = list(keccak_many(keccak_many(encodings)))
    inner = list(keccak_many(pairs))
    elapsed = time.process_time() - started
    del encodings, pairs, leaf_hashes, inner
    return elapsed


def old_leaf_hashing(leaves: list[Leaf], payout: str) -> float:
    """Seconds the previous builder spent on leaf hashes alone, extrapolated to all leaves."""
    sample = leaves[:OLD_SAMPLE]
    started = time.process_time()
    for leaf in sample:
        values = [CHAIN_ID, payout, leaf.account, leaf.token, leaf.cumulative_amount]
        keccak(keccak(encode(list(LEAF_TYPES), values)))
    return (time.process_time() - started) * len(leaves) / len(sample)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=2)
    parser.add_argument("--checksummed", action="store_true", help="checksummed input addresses")
    parser.add_argument("--dump", action="store_true", help="also time dump() and from_dump()")
    args = parser.parse_args()
    rng = random.Random(11)
    payout = to_checksum_address(rng.randbytes(20))
    leaves = make_leaves(args.leaves, args.tokens, args.checksummed, rng)
    gc.collect()
    input_mb = current_mb()

    tree, build = timed(PayoutTree, CHAIN_ID, payout, leaves)
    (proofs, nodes), proving = timed(stream_proofs, tree)
    tree_peak = peak_mb()
    checksummed, checksumming = timed(getattr, tree, "leaves")
    assert proofs == len(checksummed) == args.leaves
    figures = {"build (root)": build, "every proof": proving}
    figures["tree with every proof"] = (build[0] + proving[0], build[1] + proving[1])
    figures["checksummed .leaves"] = checksumming
    if args.dump:
        dump, figures["dump()"] = timed(tree.dump)
        again, figures["from_dump()"] = timed(PayoutTree.from_dump, dump)
        assert again.root == tree.root
        del dump, again
    dump_peak = peak_mb()
    del tree, checksummed
    gc.collect()

    floor = min(hashing_floor(args.leaves, rng) for _ in range(2))
    old = old_leaf_hashing(leaves, payout)

    cased = "checksummed" if args.checksummed else "lowercase"
    print(
        f"{args.leaves:,} leaves ({args.tokens} tokens, {cased} addresses), {nodes / proofs:.1f} "
        "nodes a proof; CPU seconds (wall in brackets) and the ratio to the hashing floor"
    )
    print(f"{'hashing floor':24}{floor:8.2f} s            ({3 * args.leaves - 1:,} keccaks)")
    for name, (cpu, wall) in figures.items():
        print(f"{name:24}{cpu:8.2f} s ({wall:6.2f})  {cpu / floor:5.2f} x floor")
    print(
        f"{'old leaf hashing':24}{old:8.2f} s            {old / floor:5.2f} x floor "
        f"(eth_abi.encode, from {OLD_SAMPLE:,} leaves)"
    )
    print(
        f"{'memory':24}input {input_mb:,.0f} MB, peak with tree and proofs {tree_peak:,.0f} MB"
        + (f", with dump {dump_peak:,.0f} MB" if args.dump else "")
    )


def timed(work: Callable[..., T], *args: Any) -> tuple[T, tuple[float, float]]:
    """The result, and the CPU and wall seconds it took (CPU: the machine is shared)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work(*args)
    return result, (time.process_time() - cpu, time.perf_counter() - wall)


def stream_proofs(tree: PayoutTree) -> tuple[int, int]:
    proofs = nodes = 0
    for _leaf, proof in tree.iter_proofs():
        proofs += 1
        nodes += len(proof)
    return proofs, nodes


if __name__ == "__main__":
    main()
