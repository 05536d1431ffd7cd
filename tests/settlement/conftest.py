"""Settlement fixtures: the session stack (anvil, Postgres, Redis, API, writer), settlement
settings holding the local chain's settler keys, and a way to serve and track ads on the
chain's clock (the API's clock follows anvil's, which tests move forward by epochs)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.core.settings import Settings
from tests.settlement.world import (
    CPC_ADVERTISER,
    CPC_BID,
    CPM_ADVERTISER,
    CPM_BID,
    P1,
    P2,
    PAYEE_1,
    USDC,
    open_campaign,
    open_publisher,
)
from tests.support.anvil import DeploymentRecord
from tests.support.chain import SETTLER, dev_account
from tests.support.stack import Stack, own_stack


@pytest.fixture(scope="package")
def stack(
    deployment_record: DeploymentRecord, pg_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The settlement suite's own stack (every other suite shares the session's): its tests
    count balances from a chain nothing else settled on (the treasury's, each payee's) and
    expect no payout root another suite left pending."""
    with own_stack(deployment_record, pg_server, tmp_path_factory) as started:
        yield started


def settler_key() -> str:
    return "0x" + bytes(dev_account(SETTLER).key).hex()


@pytest.fixture(scope="module")
def settlement_settings(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The stack's settings with both settler keys (one dev key on a local chain) and no IVT
    hold (tests wait for the writer themselves); the stack's deployment for code that runs
    in the test's own process. Artefacts go where the stack's API serves them from."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BUZZER_DEPLOYMENTS_DIR", str(stack.deployments_dir))
        yield stack.settings.model_copy(
            update={
                "escrow_settler_private_key": settler_key(),
                "payout_settler_private_key": settler_key(),
                "ivt_hold_seconds": 0,
                "watcher_report_dir": str(tmp_path_factory.mktemp("watcher")),
            }
        )


@contextmanager
def api_on_chain_clock(stack: Stack) -> Iterator[str]:
    """A second API whose clock is the chain's (anvil runs ahead of real time once tests
    move it): what it serves and tracks lands in the chain's current epoch."""
    import time

    offset = max(0, stack.chain.timestamp() - int(time.time()))
    with stack.another_api(BUZZER_CLOCK_OFFSET_SECONDS=str(offset)) as url:
        yield url


def settlement_env(stack: Stack, settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment of a `python -m api.settlement` process on the stack."""
    return {
        **stack.env,
        "BUZZER_ESCROW_SETTLER_PRIVATE_KEY": settings.escrow_settler_private_key,
        "BUZZER_PAYOUT_SETTLER_PRIVATE_KEY": settings.payout_settler_private_key,
        "BUZZER_IVT_HOLD_SECONDS": str(settings.ivt_hold_seconds),
        "BUZZER_SETTLEMENT_ARTEFACT_DIR": str(Path(settings.settlement_artefact_dir)),
        **{k: str(v) for k, v in extra.items()},
    }


@pytest.fixture(scope="package")
def world(stack: Stack) -> dict[str, Any]:
    """Two publishers (P1 paid to another wallet, P2 to itself), a CPM campaign with 10 USDC
    and a CPC campaign with 1 USDC, shared by the settlement tests in file order."""
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        p1 = open_publisher(api, stack, P1, "settle-one", payee=PAYEE_1)
        p2 = open_publisher(api, stack, P2, "settle-two", payee=P2)
        cpm = open_campaign(
            api, stack, CPM_ADVERTISER, bid_model="cpm", bid=CPM_BID, funds=10 * USDC
        )
        cpc = open_campaign(api, stack, CPC_ADVERTISER, bid_model="cpc", bid=CPC_BID, funds=USDC)
    return {"p1": p1, "p2": p2, "cpm": cpm, "cpc": cpc}
