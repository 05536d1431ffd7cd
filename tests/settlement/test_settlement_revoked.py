"""A root revoked on-chain (the watcher found it bad) stops settlement from building or
posting anything until an operator decides: `status` says so and how to go on; epochs keep
being spent meanwhile. `release-root` puts the revoked root's epochs into the next root,
which pays what they earned, once."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx

from tests.settlement.conftest import settlement_env
from tests.settlement.test_settlement_resume import impressions, leaf
from tests.settlement.world import (
    CPM_BID,
    FINALITY,
    PAYEE_1,
    Campaign,
    Publisher,
    claim,
    end_epoch,
    rows,
    settle,
    share,
    start_epoch,
)
from tests.support.anvil import CHALLENGE_PERIOD
from tests.support.stack import PROJECT_ROOT, Stack


def cli(stack: Stack, settings: Any, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "api.settlement", *args],
        cwd=PROJECT_ROOT,
        env=settlement_env(stack, settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_revoked_root_waits_for_an_operator_then_its_epochs_are_paid_once(
    stack: Stack, world: dict[str, Any], settlement_settings: Any
) -> None:
    p1: Publisher = world["p1"]
    cpm: Campaign = world["cpm"]
    payee = stack.chain.account(PAYEE_1).lower()
    first = start_epoch(stack)
    impressions(stack, p1, cpm, 2, first=400)
    end_epoch(stack, first)
    settle(stack, settlement_settings)
    (root_id,) = [
        r
        for (r,) in rows(
            stack, "SELECT root_id FROM settlement_roots WHERE %s = ANY(epochs)", first
        )
    ]
    earned_before = leaf(stack, payee, first) - share(2 * CPM_BID // 1000)[0]

    stack.chain.revoke_root(root_id)  # as the watcher would
    second = start_epoch(stack)
    impressions(stack, p1, cpm, 1, first=410)
    end_epoch(stack, second)
    done = settle(stack, settlement_settings)
    # the new epoch is spent, but nothing is built while the operator is needed
    assert any(f"epoch {second}: spent" in line for line in done), done
    assert any("operator needed" in line for line in done), done
    assert rows(stack, "SELECT root_id FROM settlement_epochs WHERE epoch = %s", second) == [
        (None,)
    ]
    status = cli(stack, settlement_settings, "status")
    assert status.returncode == 0
    assert f"operator needed: root {root_id} was revoked" in status.stdout
    assert f"release-root {root_id}" in status.stdout

    assert cli(stack, settlement_settings, "release-root", str(root_id + 5)).returncode == 1
    released = cli(stack, settlement_settings, "release-root", str(root_id))
    assert released.returncode == 0, released.stderr
    assert str(first) in released.stdout
    stack.chain.mine(FINALITY)
    settle(stack, settlement_settings)

    (new_root, epochs) = rows(
        stack,
        "SELECT root_id, epochs FROM settlement_roots WHERE state = 'posted' AND %s = ANY(epochs)",
        first,
    )[0]
    assert new_root == root_id + 1 and sorted(epochs) == [first, second]
    both = share(2 * CPM_BID // 1000)[0] + share(CPM_BID // 1000)[0]
    assert leaf(stack, payee, second) == earned_before + both
    stack.chain.increase_time(CHALLENGE_PERIOD + 1)
    stack.index_here()
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        before = stack.chain.usdc_balance(PAYEE_1)
        claim(api, stack, p1)
    assert stack.chain.usdc_balance(PAYEE_1) - before == both
