"""The demo `make run` loads once into a local chain: a publisher with a site and two slots,
registered on-chain with a quality score, and two advertisers, each with a funded campaign
and a creative, so `/demo?slot=<id>` fills its slot at once. Everything goes through the
API and the chain as a user's wallet would (sign in, create, sign the transactions the API
returns); it is loaded once per chain state: what already exists is kept, so a restart, or a
run that stopped half-way, adds only what is missing.

The wallets are anvil's public test accounts 5, 6 and 7 (anvil unlocks them, so their
transactions are sent with `eth_sendTransaction`); their keys are printed for a browser
wallet. Local chain only.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

USDC = 10**6
ADMIN = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil #0: mints the test USDC
ORACLE = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil #2: records quality scores
# anvil's test accounts 5, 6, 7 (public keys of a public mnemonic: never use them elsewhere)
PUBLISHER_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"
ADVERTISER_KEYS = (
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
)
PUB_ID = "demo-news"
SITE = "https://demo-news.example"
SLOTS = (
    {"name": "Sidebar", "format": "banner", "width": 300, "height": 250, "agent_price": 1_000},
    {"name": "Leaderboard", "format": "banner", "width": 728, "height": 90, "agent_price": 1_000},
)
CAMPAIGNS = (
    # (company, bid model, bid, budget, max per epoch, colour of the creative)
    ("Acme Coffee", "cpm", 3 * USDC, 50 * USDC, 10 * USDC, (146, 64, 14)),
    ("Nimbus Cloud", "cpc", 300_000, 20 * USDC, 5 * USDC, (30, 64, 175)),
)
QUALITY = 60


class DemoError(Exception):
    """The demo could not be loaded; the message says which step."""


class Demo(NamedTuple):
    slot_id: str
    wallets: list[tuple[str, str, str]]  # (role, address, key)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A one-colour PNG (the creatives' image)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


class Loader:
    def __init__(self, api_url: str, rpc_url: str, env: Mapping[str, str], stop: threading.Event):
        import httpx

        self.api = httpx.Client(base_url=api_url, timeout=30)
        self.rpc_url = rpc_url
        self.env = env
        self.stop = stop

    def rpc(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        request = urllib.request.Request(
            self.rpc_url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise DemoError(f"{method} failed: {reply['error']}")
        return reply["result"]

    def send(self, sender: str, tx: Mapping[str, Any], what: str) -> None:
        value = tx.get("value") or 0
        tx_hash = self.rpc(
            "eth_sendTransaction",
            {"from": sender, "to": tx["to"], "data": tx["data"],
             "value": hex(int(value)) if not str(value).startswith("0x") else value},
        )  # fmt: skip
        receipt = self.until(what, lambda: self.rpc("eth_getTransactionReceipt", tx_hash))
        if int(receipt["status"], 16) != 1:
            raise DemoError(f"{what}: the transaction {tx_hash} reverted")

    def call_contract(self, sender: str, name: str, method: str, *args: Any) -> None:
        from web3 import Web3

        from chain.contracts import load_abi, load_deployment

        deployment = load_deployment(int(self.env.get("CHAIN_ID") or 1337))
        contract = Web3().eth.contract(
            address=Web3.to_checksum_address(deployment.address(name)), abi=load_abi(name)
        )
        data = contract.encode_abi(method, args=list(args))
        self.send(sender, {"to": contract.address, "data": data}, f"{name}.{method}")

    def until(self, what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.2)
        raise DemoError("stopped while loading")

    def sign_in(self, key: str) -> dict[str, str]:
        from eth_account import Account
        from eth_account.messages import encode_defunct
        from siwe import SiweMessage

        account = Account.from_key(key)
        nonce = self.api.get("/api/v1/auth/nonce").json()["nonce"]
        now = datetime.now(UTC)
        message = SiweMessage(
            domain=self.env["BUZZER_SIWE_DOMAIN"],
            address=account.address,
            statement="Sign in to Buzzer Network",
            uri=self.env["BUZZER_SIWE_URI"],
            version="1",
            chain_id=int(self.env.get("CHAIN_ID") or 1337),
            nonce=nonce,
            issued_at=now.isoformat().replace("+00:00", "Z"),
            expiration_time=(now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
        ).prepare_message()
        signature = account.sign_message(encode_defunct(text=message)).signature.hex()
        reply = self.api.post(
            "/api/v1/auth/verify",
            json={"message": message, "signature": "0x" + signature.removeprefix("0x")},
        )
        self.expect(reply, "sign in", 200)
        return {"Authorization": f"Bearer {reply.json()['access_token']}"}

    @staticmethod
    def expect(reply: Any, what: str, *codes: int) -> Any:
        if reply.status_code not in codes:
            raise DemoError(f"{what}: HTTP {reply.status_code} {reply.text[:300]}")
        return reply

    def publisher(self) -> str:
        from eth_account import Account

        address = Account.from_key(PUBLISHER_KEY).address
        headers = self.sign_in(PUBLISHER_KEY)
        me = self.api.get("/api/v1/publishers/me", headers=headers)
        if me.status_code == 404:
            self.expect(
                self.api.post(
                    "/api/v1/publishers",
                    json={"website_url": SITE, "category": "news"},
                    headers=headers,
                ),
                "create the demo publisher",
                201,
            )
        else:
            self.expect(me, "read the demo publisher", 200)
        slots = self.expect(
            self.api.get("/api/v1/publishers/me/slots", headers=headers), "list slots", 200
        ).json()
        names = {slot["name"] for slot in slots}
        for slot in SLOTS:
            if slot["name"] not in names:
                created = self.api.post("/api/v1/publishers/me/slots", json=slot, headers=headers)
                slots.append(self.expect(created, f"create slot {slot['name']}", 201).json())
        profile = self.api.get("/api/v1/publishers/me", headers=headers).json()
        if not (profile.get("onchain") or {}).get("registered"):
            tx = self.expect(
                self.api.post(
                    "/api/v1/publishers/me/registration-tx",
                    json={"pub_id": PUB_ID},
                    headers=headers,
                ),
                "the registration transaction",
                200,
            ).json()
            self.send(address, tx, "register the demo publisher")
            self.call_contract(ORACLE, "PublisherRegistry", "set_quality_score", address, QUALITY)
        return str(slots[0]["slot_id"])

    def campaign(self, key: str, spec: tuple[Any, ...]) -> Callable[[], bool] | None:
        """Create, register and fund what is missing of one campaign; when it was funded
        now, a probe that is true once the API sees it active (the indexer has read the
        deposit)."""
        from eth_account import Account

        company, bid_model, bid, budget, per_epoch, colour = spec
        address = Account.from_key(key).address
        headers = self.sign_in(key)
        profile = self.api.post(
            "/api/v1/advertisers",
            json={"company_name": company, "website_url": "https://ads.example"},
            headers=headers,
        )
        self.expect(profile, f"{company}'s profile", 201, 409)
        existing = self.expect(
            self.api.get("/api/v1/campaigns", headers=headers), "list campaigns", 200
        ).json()
        if any(c.get("status") not in ("draft", "registered") for c in existing):
            return None  # funded once: what the user did with it since is theirs
        if existing:
            path = f"/api/v1/campaigns/{existing[0]['id']}"
            campaign = existing[0]
        else:
            draft = {
                "name": f"{company} ({bid_model.upper()})",
                "bid_model": bid_model,
                "bid": bid,
                "total_budget": budget,
                "max_spend_per_epoch": per_epoch,
                "format": "banner",
                "landing_url": "https://ads.example/landing",
            }
            created = self.api.post("/api/v1/campaigns", json=draft, headers=headers)
            campaign = self.expect(created, f"{company}'s campaign", 201).json()
            path = f"/api/v1/campaigns/{campaign['id']}"
            upload = self.api.post(
                f"{path}/creatives",
                files={"file": ("ad.png", png(300, 250, colour))},
                headers=headers,
            )
            self.expect(upload, f"{company}'s creative", 201)
        if not campaign.get("onchain_id"):
            tx = self.api.post(f"{path}/registration-tx", headers=headers)
            self.send(address, self.expect(tx, "registration tx", 200).json(), "register campaign")
            self.until(
                f"the API sees {company}'s campaign on-chain",
                lambda: self.api.get(path, headers=headers).json().get("onchain_id"),
            )
        self.call_contract(ADMIN, "TestUSDC", "mint", address, budget)
        funding = self.api.post(f"{path}/funding-txs", json={"amount": budget}, headers=headers)
        for tx in self.expect(funding, "funding txs", 200).json():
            self.send(address, tx, f"fund {company}'s campaign")
        return lambda: self.api.get(path, headers=headers).json().get("status") == "active"


def ensure_demo(api_url: str, rpc_url: str, env: Mapping[str, str], stop: threading.Event) -> Demo:
    """Load what is missing of the demo; the slot of its page and its wallets."""
    import httpx
    from eth_account import Account

    from api.ads.catalog import CHECK_EVERY

    loader = Loader(api_url, rpc_url, env, stop)
    try:
        slot_id = loader.publisher()
        funded = []
        for key, spec in zip(ADVERTISER_KEYS, CAMPAIGNS, strict=True):
            active = loader.campaign(key, spec)
            if active is not None:
                funded.append((spec[0], active))
        # "up" means the demo page fills: the indexer reads the deposits, then the ad
        # servers reload their catalog within CHECK_EVERY seconds of its version moving
        for company, active in funded:
            loader.until(f"{company}'s campaign is active", active)
        if funded:
            time.sleep(2 * CHECK_EVERY)
    except httpx.HTTPError as exc:
        raise DemoError(f"the API did not answer: {exc}") from None
    finally:
        loader.api.close()
    wallets = [("publisher", Account.from_key(PUBLISHER_KEY).address, PUBLISHER_KEY)]
    for key, spec in zip(ADVERTISER_KEYS, CAMPAIGNS, strict=True):
        wallets.append((f"advertiser {spec[0]}", Account.from_key(key).address, key))
    return Demo(slot_id, wallets)
