"""The watcher on a real deployment: an honest root stays; a tampered one (an honest total
in a tree that pays the settler) is revoked before anyone can claim from it; a bad root found
already matured pauses the payout with an alert; without a key it only reports; a restart
re-checks only the pending root. Each verdict moves `buzzer_watcher_verdicts_total`."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from web3.exceptions import ContractLogicError

from api.core.settings import Settings
from api.settlement.artefact import parse
from api.settlement.watcher import Watcher
from chain.contracts import load_deployment
from tests.settlement.test_verify import (
    USDC,
    fund_campaigns,
    settle,
    settler_takes_all,
    spend_epoch,
)
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.chain import GUARDIAN, SETTLER, dev_account
from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    anvil,
    chain,
)


@pytest.fixture
def make_watcher(chain, deployments_dir, tmp_path):  # noqa: F811
    """A factory of watchers on the session chain: with the guardian key unless
    `read_only`, all sharing one report directory (so a second one is a restart)."""

    def make(read_only: bool = False, key_of: int = GUARDIAN, **overrides: Any) -> Watcher:
        settings = Settings(
            RPC_URL=chain.rpc_url,
            CHAIN_ID=chain.chain_id,
            guardian_private_key="" if read_only else dev_account(key_of).key.hex(),
            watcher_report_dir=str(tmp_path / "reports"),
            settlement_artefact_dir=str(tmp_path),
            **overrides,
        )
        watcher = Watcher(settings, deployment=load_deployment(1337, deployments_dir))
        watchers.append(watcher)
        return watcher

    watchers: list[Watcher] = []
    yield make
    for watcher in watchers:
        watcher.close()


def verdicts() -> dict[str, float]:
    """The watcher's verdict counter, by verdict, as /metrics shows it."""
    names = ("ok", "reported", "revoked", "paused")
    return {
        v: REGISTRY.get_sample_value("buzzer_watcher_verdicts_total", {"verdict": v}) or 0.0
        for v in names
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    return {v: n - before[v] for v, n in verdicts().items() if n != before[v]}


def spent(driver: Any) -> None:
    campaigns = fund_campaigns(driver)
    spend_epoch(driver, {campaigns[0]: 40 * USDC, campaigns[1]: 15 * USDC})


def report_file(tmp_path: Path, root_id: int) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (tmp_path / "reports" / f"root-{root_id}.json").read_text()
    )
    return document


def test_honest_root_stays_and_is_not_checked_twice(chain, make_watcher, tmp_path):  # noqa: F811
    spent(chain)
    settle(chain, tmp_path)
    watcher = make_watcher()
    before = verdicts()

    (report,) = watcher.run_once()
    assert (report.root_id, report.ok, report.action, report.status) == (1, True, None, "pending")
    assert moved(before) == {"ok": 1}
    assert report_file(tmp_path, 1)["ok"] is True
    assert watcher.run_once() == []
    assert int(chain.call("PublisherPayout", "pending_root_id")) == 1

    # a restart checks the root again while it is pending, not once it has matured
    assert [r.root_id for r in make_watcher().run_once()] == [1]
    chain.increase_time(CHALLENGE_PERIOD)
    assert make_watcher().run_once() == []
    assert int(chain.call("PublisherPayout", "current_root_id")) == 1


def test_tampered_root_is_revoked_before_it_is_claimable(chain, make_watcher, tmp_path, caplog):  # noqa: F811
    spent(chain)
    honest = settle(chain, tmp_path)
    chain.increase_time(CHALLENGE_PERIOD)
    spend_epoch(chain, {int(honest["spends"][0]["campaign_id"]): 5 * USDC})
    tampered = settle(chain, tmp_path, honest, tamper=settler_takes_all)
    root_id = tampered["root_id"]
    posted_total = tampered["totals"][chain.usdc]
    assert int(chain.call("PublisherPayout", "root_total", root_id, chain.usdc)) == int(
        posted_total
    )

    before = verdicts()
    with caplog.at_level(logging.ERROR, logger="api.settlement.watcher"):
        reports = make_watcher().run_once()
    report = next(r for r in reports if r.root_id == root_id)
    assert report.action == "revoked" and not report.ok
    assert moved(before)["revoked"] == 1
    assert {"leaf_missing", "leaf_unallocated"} <= {f.code for f in report.findings}
    assert chain.call("PublisherPayout", "revoked", root_id) is True
    assert int(chain.call("PublisherPayout", "pending_root_id")) == 0
    assert str(tmp_path / "reports" / f"root-{root_id}.json") in caplog.text
    assert report_file(tmp_path, root_id)["action"] == "revoked"

    chain.increase_time(CHALLENGE_PERIOD)
    assert int(chain.call("PublisherPayout", "current_root_id")) == honest["root_id"]
    settler_tree = chain.payout_tree(parse(tampered).payout_leaves())
    with pytest.raises(ContractLogicError, match="invalid proof"):
        chain.claim(settler_tree, SETTLER, "usdc")


def test_bad_root_found_matured_pauses_the_payout(chain, make_watcher, tmp_path, caplog):  # noqa: F811
    spent(chain)
    settle(chain, tmp_path, tamper=settler_takes_all)
    chain.increase_time(CHALLENGE_PERIOD)  # the watcher was down

    before = verdicts()
    with caplog.at_level(logging.CRITICAL, logger="api.settlement.watcher"):
        (report,) = make_watcher().run_once()
    assert (report.status, report.action) == ("current", "paused")
    assert moved(before) == {"paused": 1}
    assert chain.call("PublisherPayout", "paused") is True
    alert = next(r for r in caplog.records if r.levelno == logging.CRITICAL)
    assert "ALERT" in alert.getMessage()
    assert str(tmp_path / "reports" / "root-1.json") in alert.getMessage()
    tree = chain.payout_tree(
        parse(json.loads((tmp_path / "root-1.json").read_text())).payout_leaves()
    )
    with pytest.raises(ContractLogicError, match="paused"):
        chain.claim(tree, SETTLER, "usdc")


def test_read_only_watcher_only_reports(chain, make_watcher, tmp_path, caplog):  # noqa: F811
    spent(chain)
    settle(chain, tmp_path, tamper=settler_takes_all)

    before = verdicts()
    with caplog.at_level(logging.ERROR, logger="api.settlement.watcher"):
        (report,) = make_watcher(read_only=True).run_once()
    assert (report.ok, report.action, report.status) == (False, None, "pending")
    assert moved(before) == {"reported": 1}
    assert "read-only" in caplog.text and "root-1.json" in caplog.text
    assert int(chain.call("PublisherPayout", "pending_root_id")) == 1
    assert chain.call("PublisherPayout", "revoked", 1) is False
    assert report_file(tmp_path, 1)["findings"]


def test_unreachable_artefact_is_retried_then_revoked(chain, make_watcher, tmp_path):  # noqa: F811
    spent(chain)
    settle(chain, tmp_path)
    (tmp_path / "root-1.json").unlink()  # posted, but nobody can check it
    watcher = make_watcher()

    assert watcher.run_once() == []
    assert int(chain.call("PublisherPayout", "pending_root_id")) == 1
    chain.increase_time(CHALLENGE_PERIOD - 300)
    (report,) = watcher.run_once()
    assert (report.action, report.findings[0].code) == ("revoked", "artefact")
    assert chain.call("PublisherPayout", "revoked", 1) is True


def test_watch_loop_revokes_a_root_posted_while_it_runs(chain, make_watcher, tmp_path):  # noqa: F811
    watcher = make_watcher(watcher_interval_seconds=0.1)
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(stop,))
    loop.start()
    try:
        spent(chain)
        settle(chain, tmp_path, tamper=settler_takes_all)
        deadline = time.monotonic() + 15
        while not chain.call("PublisherPayout", "revoked", 1) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive()
    assert chain.call("PublisherPayout", "revoked", 1) is True
    assert report_file(tmp_path, 1)["action"] == "revoked"


def test_a_key_without_the_guardian_role_still_raises_the_alert(
    chain,  # noqa: F811
    make_watcher,
    tmp_path,
    caplog,
):
    spent(chain)
    settle(chain, tmp_path, tamper=settler_takes_all)

    with caplog.at_level(logging.ERROR, logger="api.settlement.watcher"):
        (report,) = make_watcher(key_of=7).run_once()
    assert report.action is None
    assert "caller is not guardian" in report.details["revoke_error"]
    assert "caller is not guardian" in report.details["pause_error"]
    alert = next(r for r in caplog.records if r.levelno == logging.CRITICAL)
    assert "NOT paused" in alert.getMessage() and "root-1.json" in alert.getMessage()
