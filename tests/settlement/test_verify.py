"""The verifier: an honest artefact holds against the chain; each way of tampering with one
(a leaf, an allocation, a spend, a claim, the previous root) is reported, both by the pure
check and by `verify` against a real deployment on anvil."""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections.abc import Callable, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.settlement.artefact import (
    FORMAT,
    Allocation,
    ArtefactError,
    LeafEntry,
    Spend,
    build,
    cumulative_leaves,
    inputs_hash,
    load,
    parse,
)
from api.settlement.merkle import Leaf, PayoutTree
from api.settlement.verify import ChainFacts, PostedRoot, check, verify_main
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.chain import ChainDriver, dev_account
from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil,
    chain,
)

USDC = 10**6
ADVERTISERS = (5, 6)
PUBLISHERS = tuple(dev_account(i).address for i in (9, 10, 11))
PAYOUT = "0x" + "11" * 20
ESCROW = "0x" + "22" * 20
TOKEN = "0x" + "33" * 20


# ---------------------------------------------------------------------------- helpers


def split(amount: int, accounts: Sequence[str], weights: Sequence[int]) -> list[tuple[str, int]]:
    """`amount` shared by weight, the remainder to the first account: sums exactly."""
    total = sum(weights)
    shares = [amount * w // total for w in weights]
    shares[0] += amount - sum(shares)
    return list(zip(accounts, shares, strict=True))


def allocate(spends: Sequence[Spend], weights: Sequence[int] = (5, 3, 2)) -> list[Allocation]:
    return [
        Allocation(s.epoch, s.campaign_id, s.token, account, share)
        for s in spends
        for account, share in split(s.publisher_share, PUBLISHERS, weights)
        if share
    ]


def spends_on_chain(driver: ChainDriver, after_epoch: int) -> list[Spend]:
    return [
        Spend(
            epoch=e.args["epoch"],
            campaign_id=e.args["campaign_id"],
            token=e.args["token"],
            charged=e.args["charged"],
            publisher_share=e.args["publisher_share"],
            fee=e.args["fee"],
        )
        for e in driver.logs()
        if e.name == "Spent" and e.args["epoch"] > after_epoch
    ]


def spend_epoch(driver: ChainDriver, campaigns: dict[int, int]) -> int:
    """End the current epoch and spend `campaigns` (id: amount) in it; return the epoch."""
    epoch = driver.current_epoch()
    driver.end_epoch(epoch)
    driver.spend_batch(epoch, list(campaigns), list(campaigns.values()))
    return epoch


def fund_campaigns(driver: ChainDriver) -> list[int]:
    campaigns = []
    for advertiser in ADVERTISERS:
        campaign = driver.register_campaign(advertiser)
        driver.mint_usdc(advertiser, 500 * USDC)
        driver.deposit(advertiser, campaign, 500 * USDC)
        campaigns.append(campaign)
    return campaigns


Tamper = Callable[[list[Allocation], list[Leaf]], tuple[list[Allocation], list[Leaf]]]


def settle(
    driver: ChainDriver,
    directory: Path,
    previous: dict[str, Any] | None = None,
    tamper: Tamper | None = None,
    post: bool = True,
) -> dict[str, Any]:
    """What the settlement job does: allocate every Spent since the previous root to the
    publishers, build the artefact, write it and post its root (`tamper` may change the
    allocations and leaves first, as a thief with the settler key would)."""
    previous_artefact = parse(previous) if previous else None
    after = max(previous_artefact.epochs, default=0) if previous_artefact else 0
    spends = spends_on_chain(driver, after)
    allocations = allocate(spends)
    previous_leaves = list(previous_artefact.leaves) if previous_artefact else []
    leaves = cumulative_leaves(previous_leaves, allocations)
    if tamper is not None:
        allocations, leaves = tamper(allocations, leaves)
    tree = driver.payout_tree(leaves)
    root_id = int(driver.call("PublisherPayout", "latest_root_id")) + 1
    head = driver.block()
    document = build(
        chain_id=driver.chain_id,
        payout_contract=driver.addresses["PublisherPayout"],
        escrow_contract=driver.addresses["PaymentEscrow"],
        root_id=root_id,
        previous_root_id=previous_artefact.root_id if previous_artefact else None,
        epochs=sorted({s.epoch for s in spends}),
        spends=spends,
        allocations=allocations,
        previous_leaves=previous_leaves,
        tree=tree,
        finalized_block=(int(head["number"], 16), head["hash"]),
        code_version="test",
    )
    path = directory / f"root-{root_id}.json"
    path.write_text(json.dumps(document))
    if post:
        driver.post_root(tree, root_id, artefact_uri=f"file://{path}")
    return document


def settler_takes_all(
    allocations: list[Allocation], leaves: list[Leaf]
) -> tuple[list[Allocation], list[Leaf]]:
    """An honest total in a tree that pays it all to the settler."""
    total = sum(leaf.cumulative_amount for leaf in leaves)
    return allocations, [Leaf(dev_account(1).address, leaves[0].token, total)]


def codes(findings: Any) -> set[str]:
    return {f["code"] if isinstance(f, dict) else f.code for f in findings}


# ---------------------------------------------------------------------------- pure check


def offline(
    allocations_by_root: Sequence[Sequence[Allocation]],
    spends: Sequence[Spend],
    claimed: dict[tuple[str, str], int] | None = None,
) -> tuple[list[dict[str, Any]], ChainFacts]:
    """Honest artefacts for consecutive roots, and the chain facts that agree with them."""
    documents: list[dict[str, Any]] = []
    roots: dict[int, PostedRoot] = {}
    previous: list[Any] = []
    for root_id, allocations in enumerate(allocations_by_root, start=1):
        epochs = sorted({a.epoch for a in allocations})
        tree = PayoutTree(1337, PAYOUT, cumulative_leaves(previous, allocations))
        document = build(
            chain_id=1337,
            payout_contract=PAYOUT,
            escrow_contract=ESCROW,
            root_id=root_id,
            previous_root_id=root_id - 1 or None,
            epochs=epochs,
            spends=[s for s in spends if s.epoch in epochs],
            allocations=allocations,
            previous_leaves=previous,
            tree=tree,
            finalized_block=(10 * root_id, "0x" + "ab" * 32),
            code_version="test",
        )
        documents.append(document)
        roots[root_id] = PostedRoot(
            root_id, document["root"], 0, tree.totals(), f"root-{root_id}.json", root_id, False
        )
        previous = list(tree.leaves)
    facts = ChainFacts(
        chain_id=1337,
        payout_contract=parse(documents[0]).payout_contract,
        escrow_contract=parse(documents[0]).escrow_contract,
        roots=roots,
        spends={s.key: s for s in spends},
        claimed=claimed or {},
        current_root_id=len(documents) - 1,
        pending_root_id=len(documents),
        paused=False,
    )
    return documents, facts


def two_roots() -> tuple[list[dict[str, Any]], ChainFacts]:
    token = TOKEN
    spends = [
        Spend(1, 7, token, 1000, 850, 150),
        Spend(1, 8, token, 200, 170, 30),
        Spend(2, 7, token, 100, 85, 15),
    ]
    first = allocate(spends[:2])
    second = allocate(spends[2:])
    a, b, _ = PUBLISHERS
    return offline([first, second], spends, claimed={(a, token): 400, (b, token): 1})


def retree(document: dict[str, Any], tree: PayoutTree) -> dict[str, Any]:
    """The document with `tree`'s leaves, root and totals (a tamper that keeps the artefact
    self-consistent)."""
    document = copy.deepcopy(document)
    document["leaves"] = [
        {"account": x.account, "token": x.token, "cumulative_amount": str(x.cumulative_amount)}
        for x in tree.leaves
    ]
    document["root"] = "0x" + tree.root.hex()
    document["totals"] = {t: str(v) for t, v in tree.totals().items()}
    document["tree"] = None
    return document


def test_honest_artefacts_have_no_findings():
    (first, second), facts = two_roots()
    assert check(parse(first), facts, None) == []
    assert check(parse(second), facts, parse(first)) == []


def test_changed_leaf_is_reported():
    (first, second), facts = two_roots()
    leaves = [Leaf(x.account, x.token, x.cumulative_amount) for x in parse(second).leaves]
    leaves[0] = Leaf(leaves[0].account, leaves[0].token, leaves[0].cumulative_amount + 1)
    found = codes(
        check(parse(retree(second, PayoutTree(1337, PAYOUT, leaves))), facts, parse(first))
    )
    assert {"leaf", "posted_root", "posted_totals"} <= found


def test_leaf_changed_without_recomputing_the_root_is_reported():
    (first, second), facts = two_roots()
    second["leaves"][0]["cumulative_amount"] = "1"
    assert {"root", "totals", "tree_dump", "leaf"} <= codes(
        check(parse(second), facts, parse(first))
    )


def test_changed_allocation_is_reported():
    (first, second), facts = two_roots()
    second["allocations"][0]["amount"] = str(int(second["allocations"][0]["amount"]) + 5)
    found = check(parse(second), facts, parse(first))
    assert {"allocations", "leaf", "inputs_hash"} <= codes(found)
    assert any("its Spent publisher share is 85" in f.message for f in found)


def test_missing_spend_is_reported():
    (first, _), facts = two_roots()
    dropped = [a for a in parse(first).allocations if a.campaign_id != 8]
    document = copy.deepcopy(first)
    document["spends"] = [s for s in document["spends"] if s["campaign_id"] != "8"]
    document["allocations"] = [a for a in document["allocations"] if a["campaign_id"] != "8"]
    document = retree(document, PayoutTree(1337, PAYOUT, cumulative_leaves([], dropped)))
    found = check(parse(document), facts, None)
    assert "spend_missing" in codes(found)
    assert any("campaign 8 in epoch 1" in f.message for f in found)


def test_uncovered_epoch_is_reported():
    (first, _), facts = two_roots()
    document = copy.deepcopy(first)
    document["epochs"] = [1, 3]
    spends = dict(facts.spends)
    spends[(2, 9)] = Spend(2, 9, TOKEN, 10, 8, 2)
    facts = ChainFacts(**{**facts.__dict__, "spends": spends})
    assert "epochs" in codes(check(parse(document), facts, None))


def test_spend_with_nothing_for_publishers_may_be_left_out():
    (first, second), facts = two_roots()
    spends = {
        **facts.spends,
        (2, 9): Spend(2, 9, TOKEN, 1, 0, 1),
        (3, 9): Spend(3, 9, TOKEN, 1, 0, 1),
    }
    facts = ChainFacts(**{**facts.__dict__, "spends": spends})
    assert check(parse(second), facts, parse(first)) == []


def test_lowered_below_claimed_is_reported():
    (first, second), facts = two_roots()
    a = PUBLISHERS[0]
    leaves = [
        Leaf(x.account, x.token, 399 if x.account == a else x.cumulative_amount)
        for x in parse(second).leaves
    ]
    found = check(parse(retree(second, PayoutTree(1337, PAYOUT, leaves))), facts, parse(first))
    assert "below_claimed" in codes(found)
    assert any(f"{a} already claimed 400" in f.message for f in found)


def test_wrong_previous_root_is_reported():
    (first, second), facts = two_roots()
    document = copy.deepcopy(second)
    document["previous_root_id"] = None
    assert "previous_root" in codes(check(parse(document), facts, None))
    # building on a revoked root
    revoked = {**facts.roots, 1: PostedRoot(**{**facts.roots[1].__dict__, "revoked": True})}
    facts = ChainFacts(**{**facts.__dict__, "roots": revoked})
    assert "previous_root" in codes(check(parse(second), facts, parse(first)))


def test_account_without_allocation_is_reported():
    (first, second), facts = two_roots()
    stranger = dev_account(20).address
    leaves = [Leaf(x.account, x.token, x.cumulative_amount) for x in parse(second).leaves]
    found = codes(
        check(
            parse(retree(second, PayoutTree(1337, PAYOUT, [*leaves, Leaf(stranger, TOKEN, 1)]))),
            facts,
            parse(first),
        )
    )
    assert "leaf_unallocated" in found


def test_inputs_hash_does_not_depend_on_row_order():
    spends = [Spend(1, 7, TOKEN, 1000, 850, 150), Spend(1, 8, TOKEN, 200, 170, 30)]
    allocations = allocate(spends)
    leaves = [LeafEntry(PUBLISHERS[0], TOKEN, 5), LeafEntry(PUBLISHERS[1], TOKEN, 6)]
    forward = inputs_hash(spends, allocations, leaves)
    assert forward == inputs_hash(spends[::-1], allocations[::-1], leaves[::-1])
    assert forward != inputs_hash(spends, allocations[1:], leaves)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="buzzer-payout-v1"), "not a buzzer-payout-v2 artefact"),
        (lambda d: d.pop("root"), "artefact has no 'root'"),
        (lambda d: d["leaves"][0].update(account="0x12"), "leaves[0].account '0x12' is not an"),
        (lambda d: d["spends"][1].update(charged="-3"), "spends[1].charged must be a decimal"),
        (lambda d: d["allocations"][0].update(amount=1.5), "allocations[0].amount must be"),
        (lambda d: d.update(root="0x1234"), "root '0x1234' is not 32 bytes"),
        (lambda d: d.update(epochs="5"), "artefact 'epochs' must be a list"),
    ],
)
def test_malformed_artefact_is_refused_with_the_field_named(change, message):
    (first, _), _ = two_roots()
    document = copy.deepcopy(first)
    change(document)
    with pytest.raises(ArtefactError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(document)


def test_load_refuses_an_oversized_artefact_and_reads_file_urls(tmp_path):
    (first, _), _ = two_roots()
    path = tmp_path / "root-1.json"
    path.write_text(json.dumps(first))
    assert parse(load(f"file://{path}")).root == first["root"]
    assert load("file://root-1.json", base_dir=tmp_path)["format"] == FORMAT
    with pytest.raises(ArtefactError, match="larger than 100 bytes"):
        load(path, max_bytes=100)
    with pytest.raises(ArtefactError, match="cannot read artefact"):
        load(tmp_path / "missing.json")


def test_load_fetches_over_http_with_a_size_cap(tmp_path):
    (first, _), _ = two_roots()
    (tmp_path / "root-1.json").write_text(json.dumps(first))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert parse(load(f"{base}/root-1.json")).root == first["root"]
        with pytest.raises(ArtefactError, match="larger than 100 bytes"):
            load(f"{base}/root-1.json", max_bytes=100)
        with pytest.raises(ArtefactError, match="HTTP 404"):
            load(f"{base}/root-9.json")
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------- against anvil


def two_settled_roots(driver: ChainDriver, directory: Path) -> tuple[dict, dict]:
    """Root 1 over one epoch, matured, a publisher claims; root 2 over the next epoch,
    pending."""
    campaigns = fund_campaigns(driver)
    spend_epoch(driver, {campaigns[0]: 40 * USDC, campaigns[1]: 25 * USDC})
    first = settle(driver, directory)
    driver.increase_time(CHALLENGE_PERIOD)
    driver.claim(driver.payout_tree(parse(first).payout_leaves()), 9, "usdc")
    spend_epoch(driver, {campaigns[0]: 10 * USDC})
    second = settle(driver, directory, first)
    return first, second


def run_verify(driver: ChainDriver, path: Path, capsys: Any, *extra: str) -> tuple[int, dict]:
    """`python -m api.settlement verify --artefact PATH …`: exit code and printed report."""
    argv = ["--artefact", str(path), "--rpc-url", driver.rpc_url, "--chain-id", "1337", *extra]
    code = verify_main(argv)
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def verify_env(chain, deployments_dir, monkeypatch):  # noqa: F811
    """The session chain, with its deployments file where `verify` looks for it."""
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(deployments_dir))
    return chain


def test_verify_cli_reports_each_tampering(verify_env, tmp_path, capsys):
    driver = verify_env
    _, second = two_settled_roots(driver, tmp_path)
    claimant = dev_account(9).address
    assert int(driver.call("PublisherPayout", "get_total_paid", claimant, driver.usdc)) > 0

    code, report = run_verify(driver, tmp_path / "root-2.json", capsys, "--account", claimant)
    assert (code, report["findings"], report["status"]) == (0, [], "pending")
    assert report["account"]["claimed"] and report["account"]["allocations"]

    def tampered(name: str, change: Callable[[dict], dict]) -> set[str]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(change(copy.deepcopy(second))))
        code, report = run_verify(driver, path, capsys)
        assert code == 1
        return codes(report["findings"])

    def changed_leaf(d: dict) -> dict:
        d["leaves"][1]["cumulative_amount"] = str(int(d["leaves"][1]["cumulative_amount"]) + 1)
        return d

    def changed_allocation(d: dict) -> dict:
        d["allocations"][0]["amount"] = str(int(d["allocations"][0]["amount"]) - 1)
        return d

    def missing_spend(d: dict) -> dict:
        d["spends"] = []
        return d

    def lowered(d: dict) -> dict:
        leaves = [
            Leaf(x.account, x.token, 1 if x.account == claimant else x.cumulative_amount)
            for x in parse(d).leaves
        ]
        return retree(d, driver.payout_tree(leaves))

    def wrong_previous(d: dict) -> dict:
        d["previous_root_id"] = None
        return d

    assert {"leaf", "root", "totals"} <= tampered("leaf", changed_leaf)
    assert {"allocations", "inputs_hash"} <= tampered("allocation", changed_allocation)
    assert {"spend_missing"} <= tampered("spend", missing_spend)
    assert {"below_claimed", "posted_root"} <= tampered("lowered", lowered)
    assert {"previous_root"} <= tampered("previous", wrong_previous)


def test_verify_cli_reports_a_root_that_pays_the_settler(verify_env, tmp_path, capsys):
    driver = verify_env
    campaigns = fund_campaigns(driver)
    spend_epoch(driver, {campaigns[0]: 30 * USDC})
    settle(driver, tmp_path, tamper=settler_takes_all)
    code, report = run_verify(driver, tmp_path / "root-1.json", capsys)
    assert code == 1 and {"leaf_missing", "leaf_unallocated"} <= codes(report["findings"])
