"""Payout tree benchmark: building a cumulative-earnings tree and every proof in it, beside
the hashing floor measured in the same run (two keccaks per leaf plus one per inner node,
with the same keccak over inputs made beforehand, so nothing but hashing is timed).

    .venv/bin/python bench/settlement_tree.py [--leaves 1000000] [--tokens 2] [--checksummed]
                                              [--dump]

One leaf per wallet and token. Addresses are lowercase as Postgres stores them (checksummed
with --checksummed, which makes the build verify every checksum). Prints each figure as a
ratio to the floor; the floor is the faster of two runs after the tree, so the ratio errs
against the tree. `.leaves` (checksummed, what the dump needs) is timed apart: the proofs
stream the leaves as given. Peak memory is the process's maximum resident set size, input
included.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_abi import encode  # noqa: E402
from eth_utils import keccak, to_checksum_address  # noqa: E402

from api.settlement.merkle import LEAF_TYPES, Leaf, PayoutTree, keccak_many  # noqa: E402

CHAIN_ID = 8453
OLD_SAMPLE = 20_000  # leaves hashed the old way (eth_abi.encode), extrapolated


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
    started = time.perf_counter()
    leaf_hashes = list(keccak_many(keccak_many(encodings)))
    inner = list(keccak_many(pairs))
    elapsed = time.perf_counter() - started
    del encodings, pairs, leaf_hashes, inner
    return elapsed


def old_leaf_hashing(leaves: list[Leaf], payout: str) -> float:
    """Seconds the previous builder spent on leaf hashes alone, extrapolated to all leaves."""
    sample = leaves[:OLD_SAMPLE]
    started = time.perf_counter()
    for leaf in sample:
        values = [CHAIN_ID, payout, leaf.account, leaf.token, leaf.cumulative_amount]
        keccak(keccak(encode(list(LEAF_TYPES), values)))
    return (time.perf_counter() - started) * len(leaves) / len(sample)


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

    started = time.perf_counter()
    tree = PayoutTree(CHAIN_ID, payout, leaves)
    build = time.perf_counter() - started
    started = time.perf_counter()
    proofs = nodes = 0
    for _leaf, proof in tree.iter_proofs():
        proofs += 1
        nodes += len(proof)
    proving = time.perf_counter() - started
    tree_peak = peak_mb()
    started = time.perf_counter()
    checksummed = tree.leaves
    checksumming = time.perf_counter() - started
    assert proofs == len(checksummed) == args.leaves

    dumping = loading = 0.0
    if args.dump:
        started = time.perf_counter()
        dump = tree.dump()
        dumping = time.perf_counter() - started
        started = time.perf_counter()
        assert PayoutTree.from_dump(dump).root == tree.root
        loading = time.perf_counter() - started
        del dump
    dump_peak = peak_mb()
    del tree, checksummed
    gc.collect()

    floor = min(hashing_floor(args.leaves, rng) for _ in range(2))
    old = old_leaf_hashing(leaves, payout)

    total = build + proving
    print(
        f"leaves               {args.leaves:>12,} ({args.tokens} tokens, "
        f"{'checksummed' if args.checksummed else 'lowercase'} addresses)"
    )
    print(f"hashing floor        {floor:>10.2f} s  ({3 * args.leaves - 1:,} keccaks)")
    print(f"build (root)         {build:>10.2f} s  {build / floor:>5.2f} x floor")
    print(
        f"every proof          {proving:>10.2f} s  {proving / floor:>5.2f} x floor  "
        f"({nodes / proofs:.1f} nodes each)"
    )
    print(f"tree with every proof{total:>10.2f} s  {total / floor:>5.2f} x floor")
    print(f"checksummed .leaves  {checksumming:>10.2f} s  {checksumming / floor:>5.2f} x floor")
    if args.dump:
        print(f"dump()               {dumping:>10.2f} s  {dumping / floor:>5.2f} x floor")
        print(f"from_dump()          {loading:>10.2f} s  {loading / floor:>5.2f} x floor")
    print(
        f"old leaf hashing     {old:>10.2f} s  {old / floor:>5.2f} x floor  "
        f"(eth_abi.encode, from {OLD_SAMPLE:,} leaves)"
    )
    print(
        f"memory               input {input_mb:,.0f} MB, peak with tree and proofs "
        f"{tree_peak:,.0f} MB" + (f", with dump {dump_peak:,.0f} MB" if args.dump else "")
    )


if __name__ == "__main__":
    main()
