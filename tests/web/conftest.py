"""Browser fixtures on the shared stack: one Chromium per session, and per test a `web`
that opens pages with a test wallet, fails the test on any console error it did not expect,
and keeps screenshots (and on failure the HTML and console log) under tests/web/.artifacts."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.stack import Stack
from tests.web.browser import (
    LAUNCH_ARGS,
    PERSON,
    PROJECT_ROOT,
    Artefacts,
    TestWallet,
    chromium_path,
    new_account,
)

FAILED = pytest.StashKey[bool]()
ETH = 10**18


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Chromium for this package's tests only: Playwright's sync API keeps an event loop
    running in the main thread while it is open, which later suites' `asyncio.run` refuse."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@dataclass
class Opened:
    page: Page
    wallet: TestWallet
    console: list[str] = field(default_factory=list)


class Web:
    """Pages of one test. `open()` gives a page with its own wallet (a fresh funded account
    unless one is given); `shot()` saves a screenshot."""

    def __init__(self, browser: Browser, stack: Stack, artefacts: Artefacts) -> None:
        self.browser = browser
        self.stack = stack
        self.artefacts = artefacts
        self.opened: list[Opened] = []
        self.allowed: list[re.Pattern[str]] = []

    def fund(self, address: str, eth: int = 10 * ETH, usdc: int = 0) -> None:
        self.stack.anvil.call("anvil_setBalance", address, hex(eth))
        if usdc:
            self.stack.chain.mint_usdc(address, usdc)

    def open(
        self,
        account: LocalAccount | None = None,
        *,
        width: int = 1280,
        chain_id: int | None = None,
        usdc: int = 0,
        **wallet: Any,
    ) -> Opened:
        account = account or new_account()
        if not self.opened or account.address not in {o.wallet.address for o in self.opened}:
            self.fund(account.address, usdc=usdc)
        context = self.browser.new_context(
            user_agent=PERSON, viewport={"width": width, "height": 900}, base_url=self.stack.api_url
        )
        context.set_default_timeout(20_000)
        page = context.new_page()
        real = self.stack.anvil.chain_id
        test_wallet = TestWallet(
            self.stack.anvil.url, account, chain_id or real, real_chain_id=real, **wallet
        )
        test_wallet.install(page)
        opened = Opened(page, test_wallet)
        page.on("console", lambda m: opened.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: opened.console.append(f"pageerror: {e}"))
        self.opened.append(opened)
        return opened

    def allow_console(self, pattern: str) -> None:
        """A console error this test provokes on purpose (a refused request logs one)."""
        self.allowed.append(re.compile(pattern))

    def shot(self, page: Page, label: str) -> None:
        self.artefacts.shot(page, label)

    def sign_in(self, opened: Opened, next_path: str = "/app") -> None:
        page = opened.page
        page.goto(f"/sign-in?next={next_path}")
        page.get_by_role("button", name="Connect wallet").last.click()
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(re.compile(r"^(?!.*/sign-in).*$"))

    def unexpected_console(self) -> list[str]:
        lines = [line for o in self.opened for line in o.console]
        errors = [line for line in lines if line.startswith(("error:", "pageerror:"))]
        return [e for e in errors if not any(p.search(e) for p in self.allowed)]

    def close(self, failed: bool) -> None:
        for n, opened in enumerate(self.opened):
            if failed:
                directory = self.artefacts.directory
                try:
                    (directory / f"page-{n}.html").write_text(opened.page.content())
                    opened.page.screenshot(path=directory / f"page-{n}-failed.png", full_page=True)
                except Exception as exc:  # the page may be gone
                    (directory / f"page-{n}.html").write_text(f"unavailable: {exc}")
                (directory / f"page-{n}-console.log").write_text("\n".join(opened.console))
            opened.page.context.close()


@pytest.fixture
def indexer(stack: Stack) -> Iterator[None]:
    """The indexer following the chain, as in production, so a page sees its transactions
    indexed (the status the page waits for)."""
    env = {**stack.env, "INDEXER_CONFIRMATIONS": "0", "INDEXER_POLL_SECONDS": "0.2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer", "run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def web(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Web]:
    session = Web(browser, stack, Artefacts(request.node.name))
    yield session
    failed = request.node.stash.get(FAILED, False)
    session.close(failed)
    if not failed:
        assert session.unexpected_console() == [], "the pages logged console errors"


__all__ = ["Web", "expect"]
