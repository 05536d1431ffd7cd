"""A real browser on the shared stack: Debian's Chromium driven by Playwright, with a wallet
injected into every page (an EIP-1193 provider announced over EIP-6963) whose requests reach
Python, which signs with a test key and forwards to anvil. Every flow is real: the SIWE
signature, the transactions, the chain.

Each test's page records console errors (a test fails on any), saves screenshots under
`tests/web/.artifacts/` (git-ignored, kept by CI) and, on failure, the page's HTML and its
console log."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Page

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(__file__).resolve().parent / ".artifacts"
AXE = PROJECT_ROOT / "node_modules" / "axe-core" / "axe.min.js"
PERSON = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
FALLBACK_GAS = 800_000  # what "send anyway" uses when estimation says the call reverts


def chromium_path() -> str:
    """Debian's Chromium (`make test` installs it); `BUZZER_CHROMIUM` names another."""
    named = os.environ.get("BUZZER_CHROMIUM") or shutil.which("chromium")
    if not named:
        raise RuntimeError(
            "Chromium is not installed: `make test` installs it with apt as root; otherwise "
            "`apt-get install chromium` or set BUZZER_CHROMIUM to a Chromium binary"
        )
    return named


# The page side of the wallet: an EIP-1193 provider whose `request` goes to Python.
PROVIDER_JS = """
(() => {
  const listeners = {};
  const provider = {
    isBuzzerTestWallet: true,
    async request({ method, params }) {
      const reply = JSON.parse(await window.__testWallet(method, JSON.stringify(params ?? [])));
      if (reply.error) {
        const err = new Error(reply.error.message);
        err.code = reply.error.code;
        throw err;
      }
      for (const [event, value] of reply.emit || []) {
        (listeners[event] || []).forEach((f) => f(value));
      }
      return reply.result;
    },
    on(event, listener) { (listeners[event] = listeners[event] || []).push(listener); },
    removeListener(event, listener) {
      listeners[event] = (listeners[event] || []).filter((f) => f !== listener);
    },
  };
  const info = {
    uuid: "6f1f1c56-0b8e-4c8e-9d8e-%(uuid)s",
    name: "%(name)s",
    icon: "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>",
    rdns: "network.buzzer.test",
  };
  const detail = Object.freeze({ info, provider });
  const announce = () =>
    window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
  if (%(inject_legacy)s) window.ethereum = provider;
})();
"""


class WalletRefusal(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class TestWallet:
    """A wallet extension in the page: `reject_signatures` makes it refuse to sign (the user
    pressed Reject), `chain_id` is the network it is on (switchable by the page), and
    `send_anyway` sends transactions that estimation says will revert, as a user who
    confirms a warning does."""

    __test__ = False  # a wallet, not a test class

    rpc_url: str
    account: LocalAccount
    chain_id: int
    real_chain_id: int
    reject_signatures: bool = False
    send_anyway: bool = False
    sent: list[str] = field(default_factory=list)
    # called once when the page next asks to send, before the wallet signs: a race to stage
    before_send: Callable[[], None] | None = None
    calls: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def install(
        self, page: Page, name: str = "Test Wallet", uuid: str = "000000000001", legacy: bool = True
    ) -> None:
        """Announce this wallet to the page (EIP-6963) and, with `legacy`, also be
        `window.ethereum`. Several wallets can be installed, each with its own `uuid`."""
        binding = f"__testWallet{uuid}"
        page.expose_function(binding, self._handle)
        script = PROVIDER_JS.replace("window.__testWallet(", f"window.{binding}(")
        legacy_js = "true" if legacy else "false"
        page.add_init_script(script % {"uuid": uuid, "name": name, "inject_legacy": legacy_js})

    def _handle(self, method: str, params_json: str) -> str:
        self.calls.append(method)
        try:
            result, emit = self.request(method, json.loads(params_json))
        except WalletRefusal as refusal:
            return json.dumps({"error": {"code": refusal.code, "message": str(refusal)}})
        return json.dumps({"result": result, "emit": emit})

    def rpc(self, method: str, params: list[Any]) -> Any:
        reply = httpx.post(
            self.rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            timeout=30,
        ).json()
        if "error" in reply:
            raise WalletRefusal(-32603, str(reply["error"].get("message", reply["error"])))
        return reply["result"]

    def request(self, method: str, params: list[Any]) -> tuple[Any, list[Any]]:
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [self.address], []
        if method == "eth_chainId":
            return hex(self.chain_id), []
        if method == "wallet_switchEthereumChain":
            wanted = int(params[0]["chainId"], 16)
            if wanted != self.real_chain_id:
                raise WalletRefusal(4902, f"unrecognised chain {wanted}")
            self.chain_id = wanted
            return None, [["chainChanged", hex(wanted)]]
        if method == "personal_sign":
            if self.reject_signatures:
                raise WalletRefusal(4001, "User rejected the request.")
            message = bytes.fromhex(params[0].removeprefix("0x"))
            signed = self.account.sign_message(encode_defunct(primitive=message))
            return "0x" + bytes(signed.signature).hex(), []
        if method == "eth_sendTransaction":
            return self._send(params[0]), []
        return self.rpc(method, params), []

    def _send(self, tx: dict[str, Any]) -> str:
        if self.before_send is not None:
            staged, self.before_send = self.before_send, None
            staged()
        if self.chain_id != self.real_chain_id:
            raise WalletRefusal(-32603, f"the wallet is on chain {self.chain_id}")
        call = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        try:
            gas = int(self.rpc("eth_estimateGas", [call]), 16) * 12 // 10
        except WalletRefusal:
            if not self.send_anyway:
                raise
            gas = FALLBACK_GAS
        gas_price = int(self.rpc("eth_gasPrice", []), 16)
        signed = self.account.sign_transaction(
            {
                "to": tx["to"],
                "data": tx.get("data", "0x"),
                "value": int(tx.get("value", "0x0"), 16),
                "gas": gas,
                "maxFeePerGas": gas_price * 2,
                "maxPriorityFeePerGas": 1,
                "nonce": int(self.rpc("eth_getTransactionCount", [self.address, "pending"]), 16),
                "chainId": self.real_chain_id,
            }
        )
        tx_hash = str(self.rpc("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]))
        self.sent.append(tx_hash)
        return tx_hash


def new_account() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


class Artefacts:
    """Where one test's screenshots, and on failure its HTML and console log, go."""

    def __init__(self, test_name: str) -> None:
        self.directory = ARTEFACTS / re.sub(r"[^\w.-]+", "_", test_name)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def shot(self, page: Page, label: str) -> Path:
        self.count += 1
        name = re.sub(r"[^\w-]+", "-", label)
        path = self.directory / f"{self.count:02d}-{name}.png"
        page.screenshot(path=path, full_page=True)
        return path


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of the page as it is, of the given impacts, one line each."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    report = page.evaluate("() => axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in report["violations"]
        if v["impact"] in impacts
    ]
