"""Recompute a posted payout root from the chain and its public artefact.

    report = verify_artefact("http://127.0.0.1:8545", 8453, "https://…/root-3.json")
    if not report.ok:
        for finding in report.findings:
            print(finding.code, finding.message)

`check(artefact, facts, previous_artefact)` is the pure core: the artefact against what the
chain says (`ChainFacts`, gathered by `ChainReader` through chain.rpc and chain.decode, never
our database). It proves the root and totals come from the leaves, the leaves from the previous
root's leaves plus the allocations, the allocations from the `Spent` events, and that no one is
lowered below what they claimed. It cannot prove which publishers within a campaign earned
its share: that rests on the tracking data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import is_address, keccak, to_checksum_address

from api.settlement.artefact import (
    DEFAULT_MAX_BYTES,
    Artefact,
    ArtefactError,
    Spend,
    cumulative_leaves,
    inputs_hash,
    load,
    parse,
)
from api.settlement.merkle import MerkleError, PayoutTree
from chain.contracts import Deployment, load_abi, load_deployment
from chain.decode import Decoder
from chain.rpc import RangeTooLarge, Rpc

log = logging.getLogger(__name__)

CALL_BATCH = 500
MAX_LOG_RANGE = 100_000


@dataclass(frozen=True)
class Finding:
    """One disagreement between an artefact and the chain (or within the artefact)."""

    code: str
    message: str


@dataclass(frozen=True)
class PostedRoot:
    """A `RootPosted` event, with whether the root was revoked since."""

    root_id: int
    root: str
    claimable_at: int
    totals: dict[str, int]
    artefact_uri: str
    block_number: int
    revoked: bool


@dataclass(frozen=True)
class ChainFacts:
    """What the chain says, as far as a root's check needs it."""

    chain_id: int
    payout_contract: str
    escrow_contract: str
    roots: dict[int, PostedRoot]
    spends: dict[tuple[int, int], Spend]
    claimed: dict[tuple[str, str], int]
    current_root_id: int
    pending_root_id: int
    paused: bool
    head_block: int = 0
    head_timestamp: int = 0


@dataclass
class Report:
    """The outcome of checking one artefact (and, for the watcher, what was done about it)."""

    root_id: int | None
    root: str | None
    artefact_uri: str
    findings: list[Finding]
    status: str = ""
    action: str | None = None
    account: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "root_id": self.root_id,
            "root": self.root,
            "artefact_uri": self.artefact_uri,
            "ok": self.ok,
            "status": self.status,
            "action": self.action,
            "findings": [asdict(f) for f in self.findings],
            "account": self.account,
            **({"details": self.details} if self.details else {}),
        }


# ------------------------------------------------------------------------------ the check

Note = Callable[[str, str], None]  # records one finding: code, message


def expected_previous_root_id(root_id: int, roots: Mapping[int, PostedRoot]) -> int | None:
    """The newest unrevoked root posted before `root_id`: the one whose leaves it builds on."""
    earlier = [i for i, posted in roots.items() if i < root_id and not posted.revoked]
    return max(earlier) if earlier else None


def check(
    artefact: Artefact, facts: ChainFacts, previous_artefact: Artefact | None
) -> list[Finding]:
    """Every way `artefact` disagrees with the chain; empty when it holds."""
    findings: list[Finding] = []

    def finding(code: str, message: str) -> None:
        findings.append(Finding(code, message))

    if artefact.chain_id != facts.chain_id:
        finding("chain", f"artefact is for chain {artefact.chain_id}, not {facts.chain_id}")
    if artefact.payout_contract != facts.payout_contract:
        finding(
            "contract",
            f"artefact names payout {artefact.payout_contract}, not {facts.payout_contract}",
        )
    if artefact.escrow_contract != facts.escrow_contract:
        finding(
            "contract",
            f"artefact names escrow {artefact.escrow_contract}, not {facts.escrow_contract}",
        )

    _check_tree(artefact, finding)
    _check_posted(artefact, facts, finding)
    _check_spends(artefact, facts, finding)
    _check_claimed(artefact, facts, finding)
    previous_leaves = _check_previous(artefact, facts, previous_artefact, finding)
    if previous_leaves is None:
        return findings
    if inputs_hash(artefact.spends, artefact.allocations, previous_leaves) != artefact.inputs_hash:
        finding(
            "inputs_hash",
            "inputs_hash is not the hash of the spends, allocations and previous leaves",
        )
    _check_epochs(artefact, facts, previous_artefact, finding)
    _check_leaves(artefact, previous_leaves, finding)
    return findings


def _check_tree(artefact: Artefact, finding: Note) -> None:
    try:
        tree = PayoutTree(artefact.chain_id, artefact.payout_contract, artefact.payout_leaves())
    except MerkleError as exc:
        finding("leaves", f"the leaves do not make a payout tree: {exc}")
        return
    root = "0x" + tree.root.hex()
    if root != artefact.root:
        finding("root", f"the leaves hash to {root}, the artefact says {artefact.root}")
    computed = tree.totals()
    if computed != artefact.totals:
        finding(
            "totals",
            f"the leaves sum to {_show(computed)}, the artefact says {_show(artefact.totals)}",
        )
    dump = artefact.tree
    if dump is not None:
        nodes = dump.get("tree") or []
        if not nodes or str(nodes[0]).lower() != root:
            finding("tree_dump", "the standard-v1 tree dump does not have the leaves' root")
        values = {
            (str(v["value"][2]).lower(), str(v["value"][3]).lower(), str(v["value"][4]))
            for v in dump.get("values", [])
            if isinstance(v, Mapping) and isinstance(v.get("value"), list) and len(v["value"]) == 5
        }
        leaves = {
            (leaf.account.lower(), leaf.token.lower(), str(leaf.cumulative_amount))
            for leaf in artefact.leaves
        }
        if values != leaves:
            finding("tree_dump", "the standard-v1 tree dump does not hold the artefact's leaves")


def _check_posted(artefact: Artefact, facts: ChainFacts, finding: Note) -> None:
    posted = facts.roots.get(artefact.root_id)
    if posted is None:
        finding("not_posted", f"no root {artefact.root_id} was posted on chain")
        return
    if posted.root != artefact.root:
        finding(
            "posted_root",
            f"root {artefact.root_id} on chain is {posted.root}, the artefact says {artefact.root}",
        )
    for token in sorted(set(posted.totals) | set(artefact.totals)):
        on_chain, claimed = posted.totals.get(token, 0), artefact.totals.get(token, 0)
        if on_chain != claimed:
            finding(
                "posted_totals",
                f"root {artefact.root_id} was posted with total {on_chain} of {token}, "
                f"the artefact's leaves sum to {claimed}",
            )


def _check_previous(
    artefact: Artefact, facts: ChainFacts, previous: Artefact | None, finding: Note
) -> list[Any] | None:
    """The previous root's leaves (empty for the first root), or None when they are unknown."""
    expected = expected_previous_root_id(artefact.root_id, facts.roots)
    if artefact.previous_root_id != expected:
        finding(
            "previous_root",
            f"previous_root_id is {artefact.previous_root_id}, but the newest unrevoked root "
            f"before {artefact.root_id} is {expected}",
        )
    if artefact.previous_root_id is None:
        return []
    if previous is None:
        finding(
            "previous_artefact", f"the artefact of root {artefact.previous_root_id} is unavailable"
        )
        return None
    if previous.root_id != artefact.previous_root_id:
        finding(
            "previous_artefact",
            f"the previous artefact is root {previous.root_id}, not {artefact.previous_root_id}",
        )
        return None
    posted = facts.roots.get(previous.root_id)
    try:
        previous_root = (
            "0x"
            + PayoutTree(
                previous.chain_id, previous.payout_contract, previous.payout_leaves()
            ).root.hex()
        )
    except MerkleError as exc:
        finding("previous_artefact", f"the leaves of root {previous.root_id} are not a tree: {exc}")
        return None
    if posted is None or posted.root != previous_root:
        finding(
            "previous_artefact",
            f"the artefact of root {previous.root_id} does not hash to the root posted on chain",
        )
        return None
    return list(previous.leaves)


def _check_epochs(
    artefact: Artefact, facts: ChainFacts, previous: Artefact | None, finding: Note
) -> None:
    epochs = artefact.epochs
    if list(epochs) != sorted(set(epochs)):
        finding("epochs", f"epochs {list(epochs)} are not ascending and distinct")
    after = max(previous.epochs, default=0) if previous is not None else 0
    early = [e for e in epochs if e <= after]
    if early:
        finding(
            "epochs", f"epochs {early} were already covered by root {artefact.previous_root_id}"
        )
    if not epochs:
        return
    last = max(epochs)
    # an epoch whose spends left nothing to publishers needs no root
    spent_epochs = {
        epoch
        for (epoch, _), s in facts.spends.items()
        if s.publisher_share and after < epoch <= last
    }
    skipped = sorted(spent_epochs - set(epochs))
    if skipped:
        finding("epochs", f"epochs {skipped} have Spent events but are not covered")


def _check_spends(artefact: Artefact, facts: ChainFacts, finding: Note) -> None:
    covered = set(artefact.epochs)
    on_chain = {key: spend for key, spend in facts.spends.items() if key[0] in covered}
    listed: dict[tuple[int, int], Spend] = {}
    for spend in artefact.spends:
        if spend.key in listed:
            finding(
                "spends", f"campaign {spend.campaign_id} is listed twice in epoch {spend.epoch}"
            )
        listed[spend.key] = spend
        if spend.epoch not in covered:
            finding(
                "spends",
                f"spend of campaign {spend.campaign_id} in epoch {spend.epoch} "
                "is outside the covered epochs",
            )
    for key, spend in sorted(on_chain.items()):
        mine = listed.get(key)
        if mine is None and spend.publisher_share == 0:
            continue
        if mine is None:
            finding(
                "spend_missing",
                f"Spent of campaign {key[1]} in epoch {key[0]} ({spend.publisher_share} to "
                "publishers) is not in the artefact",
            )
        elif mine != spend:
            finding(
                "spend_mismatch",
                f"spend of campaign {key[1]} in epoch {key[0]} differs from its Spent event",
            )
    for key in sorted(set(listed) - set(on_chain)):
        finding("spend_unknown", f"no Spent event of campaign {key[1]} in epoch {key[0]}")

    allocated: dict[tuple[int, int], int] = defaultdict(int)
    seen: set[tuple[int, int, str, str]] = set()
    for allocation in artefact.allocations:
        key = (allocation.epoch, allocation.campaign_id)
        row = (allocation.epoch, allocation.campaign_id, allocation.token, allocation.account)
        if row in seen:
            finding(
                "allocations",
                f"{allocation.account} is allocated twice for campaign {key[1]} in epoch {key[0]}",
            )
        seen.add(row)
        allocated[key] += allocation.amount
        spent = on_chain.get(key)
        if spent is not None and allocation.token != spent.token:
            finding(
                "allocations",
                f"allocation to {allocation.account} for campaign {key[1]} in epoch {key[0]} "
                f"is in {allocation.token}, the campaign spent {spent.token}",
            )
    for key in sorted(set(allocated) | set(on_chain)):
        share = on_chain[key].publisher_share if key in on_chain else 0
        if key not in on_chain:
            finding(
                "allocations",
                f"campaign {key[1]} has allocations in epoch {key[0]} but no Spent event",
            )
        elif allocated.get(key, 0) != share:
            finding(
                "allocations",
                f"allocations for campaign {key[1]} in epoch {key[0]} sum to "
                f"{allocated.get(key, 0)}, "
                f"its Spent publisher share is {share}",
            )


def _check_leaves(artefact: Artefact, previous_leaves: Sequence[Any], finding: Note) -> None:
    expected = {
        (leaf.account, leaf.token): leaf.cumulative_amount
        for leaf in cumulative_leaves(previous_leaves, artefact.allocations)
    }
    actual = {leaf.key: leaf.cumulative_amount for leaf in artefact.leaves}
    for key, amount in sorted(expected.items()):
        if key not in actual:
            if amount:
                finding("leaf_missing", f"{key[0]} has no leaf for {key[1]}; expected {amount}")
        elif actual[key] != amount:
            finding(
                "leaf",
                f"leaf of {key[0]} in {key[1]} is {actual[key]}; previous leaf plus "
                f"allocations is {amount}",
            )
    for key in sorted(set(actual) - set(expected)):
        finding(
            "leaf_unallocated",
            f"{key[0]} has a leaf of {actual[key]} in {key[1]} without any allocation",
        )


def _check_claimed(artefact: Artefact, facts: ChainFacts, finding: Note) -> None:
    actual = {leaf.key: leaf.cumulative_amount for leaf in artefact.leaves}
    for (account, token), claimed in sorted(facts.claimed.items()):
        amount = actual.get((account, token), 0)
        if amount < claimed:
            finding(
                "below_claimed",
                f"{account} already claimed {claimed} of {token}; the root gives it {amount}",
            )


def _show(totals: Mapping[str, int]) -> str:
    return ", ".join(f"{token}: {amount}" for token, amount in sorted(totals.items())) or "nothing"


# ------------------------------------------------------------------------------ the chain


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


class ChainReader:
    """Reads the payout's roots, the escrow's spends and the claims through one RPC."""

    def __init__(self, rpc: Rpc, deployment: Deployment) -> None:
        self.rpc = rpc
        self.chain_id = deployment.chain_id
        self.payout = deployment.address("PublisherPayout")
        self.escrow = deployment.address("PaymentEscrow")
        self.start_block = deployment.start_block
        abis = {
            "PublisherPayout": load_abi("PublisherPayout"),
            "PaymentEscrow": load_abi("PaymentEscrow"),
        }
        self.decoder = Decoder({self.payout: "PublisherPayout", self.escrow: "PaymentEscrow"}, abis)
        self._topics = {
            name: "0x" + keccak(text=signature).hex()
            for name, signature in {
                "RootPosted": "RootPosted(uint256,bytes32,uint256,address[],uint256[],string)",
                "RootRevoked": "RootRevoked(uint256,bytes32,address)",
                "Spent": "Spent(uint256,uint256,address,uint256,uint256,uint256,uint256)",
                "Claimed": "Claimed(uint256,address,address,address,uint256,uint256)",
            }.items()
        }

    def _logs(self, address: str, names: Sequence[str], head: int) -> list[Any]:
        topics = [[self._topics[n] for n in names]]
        found: list[Any] = []
        start = self.start_block
        step = MAX_LOG_RANGE
        while start <= head:
            end = min(head, start + step - 1)
            try:
                found.extend(
                    self.rpc.call(
                        "eth_getLogs",
                        [
                            {
                                "address": address,
                                "topics": topics,
                                "fromBlock": hex(start),
                                "toBlock": hex(end),
                            }
                        ],
                    )
                )
            except RangeTooLarge:
                step = max(1, step // 4)
                continue
            start = end + 1
        return found

    def roots(self, head: int) -> dict[int, PostedRoot]:
        events = self.decoder.decode_all(
            self._logs(self.payout, ["RootPosted", "RootRevoked"], head)
        )
        revoked = {e.args["root_id"] for e in events if e.name == "RootRevoked"}
        roots: dict[int, PostedRoot] = {}
        for event in events:
            if event.name != "RootPosted":
                continue
            args = event.args
            roots[args["root_id"]] = PostedRoot(
                root_id=args["root_id"],
                root=args["root"].lower(),
                claimable_at=args["claimable_at"],
                totals={
                    to_checksum_address(token): total
                    for token, total in zip(args["tokens"], args["cumulative_totals"], strict=True)
                },
                artefact_uri=args["artefact_uri"],
                block_number=event.block_number,
                revoked=args["root_id"] in revoked,
            )
        return roots

    def spends(self, head: int) -> dict[tuple[int, int], Spend]:
        spends: dict[tuple[int, int], Spend] = {}
        for event in self.decoder.decode_all(self._logs(self.escrow, ["Spent"], head)):
            args = event.args
            key = (args["epoch"], args["campaign_id"])
            before = spends.get(key)
            # a campaign spends at most once per epoch; were there two, the shares would add up
            spends[key] = Spend(
                epoch=key[0],
                campaign_id=key[1],
                token=to_checksum_address(args["token"]),
                charged=args["charged"] + (before.charged if before else 0),
                publisher_share=args["publisher_share"] + (before.publisher_share if before else 0),
                fee=args["fee"] + (before.fee if before else 0),
            )
        return spends

    def claimed(
        self, keys: Iterable[tuple[str, str]], block: str = "latest"
    ) -> dict[tuple[str, str], int]:
        """What each (account, token) was ever paid (`get_total_paid`); zeros left out."""
        keys = sorted(set(keys))
        selector = _selector("get_total_paid(address,address)")
        paid: dict[tuple[str, str], int] = {}
        for start in range(0, len(keys), CALL_BATCH):
            chunk = keys[start : start + CALL_BATCH]
            calls = [
                (
                    "eth_call",
                    [
                        {
                            "to": self.payout,
                            "data": "0x"
                            + (selector + abi_encode(["address", "address"], list(key))).hex(),
                        },
                        block,
                    ],
                )
                for key in chunk
            ]
            for key, result in zip(chunk, self.rpc.batch(calls), strict=True):
                amount = int(result, 16)
                if amount:
                    paid[key] = amount
        return paid

    def view_uint(self, name: str, block: str = "latest") -> int:
        data = "0x" + _selector(f"{name}()").hex()
        result = self.rpc.call("eth_call", [{"to": self.payout, "data": data}, block])
        value: int = abi_decode(["uint256"], bytes.fromhex(result[2:]))[0]
        return value

    def claimants(self, head: int) -> set[tuple[str, str]]:
        """Every (account, token) that ever claimed: the only ones a root could lower below
        what they were paid."""
        return {
            (to_checksum_address(e.args["account"]), to_checksum_address(e.args["token"]))
            for e in self.decoder.decode_all(self._logs(self.payout, ["Claimed"], head))
        }

    def facts(self, keys: Iterable[tuple[str, str]] = ()) -> ChainFacts:
        """The chain at its head; `keys` are (account, token) pairs whose claims are read
        besides everyone who ever claimed."""
        head = self.rpc.block("latest")
        if head is None:
            raise ArtefactError("the node returned no head block")
        number = int(head["number"], 16)
        tag = hex(number)
        return ChainFacts(
            chain_id=self.chain_id,
            payout_contract=self.payout,
            escrow_contract=self.escrow,
            roots=self.roots(number),
            spends=self.spends(number),
            claimed=self.claimed(self.claimants(number) | set(keys), tag),
            current_root_id=self.view_uint("current_root_id", tag),
            pending_root_id=self.view_uint("pending_root_id", tag),
            paused=bool(self.view_uint("paused", tag)),
            head_block=number,
            head_timestamp=int(head["timestamp"], 16),
        )


# ------------------------------------------------------------------------------ entry points


def load_previous(
    artefact: Artefact, roots: Mapping[int, PostedRoot], base_dir: Path | None, max_bytes: int
) -> tuple[Artefact | None, str | None]:
    """The artefact of the root `artefact` builds on, fetched from its posted URI; with the
    reason when it cannot be had."""
    if artefact.previous_root_id is None:
        return None, None
    posted = roots.get(artefact.previous_root_id)
    if posted is None:
        return None, f"root {artefact.previous_root_id} was never posted"
    try:
        return parse(load(posted.artefact_uri, max_bytes, base_dir)), None
    except ArtefactError as exc:
        return None, str(exc)


def verify_artefact(
    rpc_url: str,
    chain_id: int,
    source: str,
    account: str | None = None,
    *,
    deployment: Deployment | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Report:
    """Check the artefact at `source` (path, file:// or http(s) URL) against the chain; with
    `account`, the report also shows that account's leaves, allocations and claims."""
    deployment = deployment or load_deployment(chain_id)
    base_dir = _base_dir(source)
    try:
        artefact = parse(load(source, max_bytes))
    except ArtefactError as exc:
        return Report(None, None, source, [Finding("artefact", str(exc))], status="unreadable")
    rpc = Rpc(rpc_url)
    try:
        if rpc.chain_id() != chain_id:
            return Report(
                artefact.root_id,
                artefact.root,
                source,
                [Finding("chain", f"the node at {rpc_url} is not chain {chain_id}")],
            )
        reader = ChainReader(rpc, deployment)
        roots = reader.roots(rpc.block_number())
        previous, problem = load_previous(artefact, roots, base_dir, max_bytes)
        tokens = {leaf.token for leaf in artefact.leaves}
        keys = {(to_checksum_address(account), token) for token in tokens} if account else set()
        facts = reader.facts(keys)
    finally:
        rpc.close()
    findings = check(artefact, facts, previous)
    if problem is not None:
        findings.insert(0, Finding("previous_artefact", problem))
    report = Report(
        artefact.root_id,
        artefact.root,
        source,
        findings,
        status=root_status(artefact.root_id, facts),
    )
    if account is not None:
        report.account = account_summary(artefact, facts, previous, account)
    return report


def root_status(root_id: int, facts: ChainFacts) -> str:
    posted = facts.roots.get(root_id)
    if posted is None:
        return "not posted"
    if posted.revoked:
        return "revoked"
    if root_id == facts.pending_root_id:
        return "pending"
    if root_id == facts.current_root_id:
        return "current"
    return "superseded" if root_id < facts.current_root_id else "matured"


def account_summary(
    artefact: Artefact, facts: ChainFacts, previous: Artefact | None, account: str
) -> dict[str, Any]:
    """One account's view of the root: its leaves, what it had before, what it was allocated
    and what it already claimed."""
    address = to_checksum_address(account)
    before = {
        leaf.token: leaf.cumulative_amount
        for leaf in (previous.leaves if previous else ())
        if leaf.account == address
    }
    return {
        "account": address,
        "leaves": {
            leaf.token: str(leaf.cumulative_amount)
            for leaf in artefact.leaves
            if leaf.account == address
        },
        "previous_leaves": {token: str(amount) for token, amount in before.items()},
        "allocations": [
            {
                "epoch": a.epoch,
                "campaign_id": str(a.campaign_id),
                "token": a.token,
                "amount": str(a.amount),
            }
            for a in artefact.allocations
            if a.account == address
        ],
        "claimed": {
            token: str(amount) for (who, token), amount in facts.claimed.items() if who == address
        },
        "findings": [asdict(f) for f in check(artefact, facts, previous) if address in f.message],
    }


def _base_dir(source: str) -> Path | None:
    if "://" in source and not source.lower().startswith("file://"):
        return None
    path = Path(source.removeprefix("file://"))
    return path.parent if path.parent != Path("") else None


def verify_main(argv: Sequence[str] | None = None) -> int:
    """`verify --artefact FILE|URL [--account 0x…]`: prints the report as JSON; exit code 0
    when the artefact holds, 1 when anything disagrees."""
    from api.core.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="python -m api.settlement verify", description=verify_main.__doc__
    )
    parser.add_argument("--artefact", required=True, help="path, file:// or http(s):// URL")
    parser.add_argument("--account", help="also show this account's leaves, allocations and claims")
    parser.add_argument("--rpc-url", default=settings.rpc_url)
    parser.add_argument("--chain-id", type=int, default=settings.chain_id)
    args = parser.parse_args(argv)
    if args.account is not None and not is_address(args.account):
        parser.error(f"--account {args.account!r} is not an address")
    report = verify_artefact(args.rpc_url, args.chain_id, args.artefact, args.account)
    sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    for item in report.findings:
        log.error("root %s: %s: %s", report.root_id, item.code, item.message)
    return 0 if report.ok else 1
