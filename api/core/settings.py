"""API settings, from the environment (`BUZZER_` prefix, plus the usual service URLs)."""

from __future__ import annotations

import ipaddress
import json
import time
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_CHAIN_IDS = frozenset({1337, 31337})  # anvil, ape's local chain


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BUZZER_", extra="ignore")

    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "BUZZER_DATABASE_URL")
    )
    redis_url: str = Field(
        default="", validation_alias=AliasChoices("REDIS_URL", "BUZZER_REDIS_URL")
    )
    rpc_url: str = Field(
        default="http://127.0.0.1:8545", validation_alias=AliasChoices("RPC_URL", "BUZZER_RPC_URL")
    )
    chain_id: int = Field(
        default=1337, validation_alias=AliasChoices("CHAIN_ID", "BUZZER_CHAIN_ID")
    )

    # Sign-in with Ethereum: the domain and URI our own pages put in the message
    siwe_domain: str = "localhost:8000"
    siwe_uri: str = "http://localhost:8000"
    nonce_ttl_seconds: int = 300
    max_message_bytes: int = 4_096

    jwt_secret: str = Field(default="", min_length=0)
    jwt_ttl_seconds: int = 24 * 3600
    jwt_issuer: str = "buzzer-network"
    jwt_audience: str = "buzzer-api"

    cors_origins: list[str] = ["http://localhost:8000"]

    # where uploaded creatives are kept (content-addressed)
    storage_dir: str = ".run/creatives"

    # the token campaigns pay in unless they name another, and the one the indexer follows
    # for x402 payments (default: the deployment's TestUSDC on a local chain, USDC on Base)
    payment_token: str = ""

    # the ORACLE key that records verified domains and quality scores on-chain
    oracle_private_key: str = ""

    # requests per minute, per client IP and (signed in) per wallet
    rate_limit_ip_per_minute: int = 120
    rate_limit_wallet_per_minute: int = 240
    rate_limit_auth_per_minute: int = 20
    # per client IP and API worker on /x402/ad (a publisher's server relaying agents sends
    # all of them from one IP: raise it for such a publisher's traffic, or 0 for no limit)
    rate_limit_ad_per_minute: int = 1200

    # x402: the key that sends `transferWithAuthorization` (it pays the gas, holds no USDC),
    # how long an authorization may live, how long settlement waits for the receipt before
    # answering "pending", and how long the access receipt of a payment lasts
    facilitator_private_key: str = ""
    x402_max_timeout_seconds: int = 300
    x402_settle_timeout_seconds: int = 30
    x402_receipt_ttl_seconds: int = 3600

    # ad serving: the EIP-712 domain of the payment token (Base USDC: "USD Coin"/"2" on
    # mainnet, "USDC"/"2" on Sepolia), how long an ad's impression and click tokens live, and
    # how many times a day one visitor sees one campaign
    x402_asset_name: str = "USD Coin"
    x402_asset_version: str = "2"
    ad_token_ttl_seconds: int = 900
    frequency_cap: int = 20

    # Operations. The addresses (IPs or CIDRs) of the reverse proxies in front of the API:
    # only their `X-Forwarded-For` / `Forwarded` is believed (none by default: every client is
    # the peer of the connection). A JSON list or a comma-separated string in the environment.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    # where the API is reached from outside (scheme, host, optional path prefix): every URL
    # the API hands out starts with it, whatever Host header a request carried
    public_base_url: str = "http://localhost:8000"
    # the scheduler (`python -m api.scheduler`): seconds between quality-score runs
    quality_interval_seconds: float = Field(
        default=3600,
        gt=0,
        validation_alias=AliasChoices(
            "QUALITY_INTERVAL_SECONDS", "BUZZER_QUALITY_INTERVAL_SECONDS"
        ),
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR range") from None
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_base(cls, value: str) -> str:
        base = value.strip().rstrip("/")
        parts = urlsplit(base)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
            or base.endswith(("?", "#"))
            or any(c.isspace() for c in base)
        ):
            raise ValueError(
                "must be an http(s) URL: scheme, host, optional port and path prefix, "
                f"nothing else (got {value!r})"
            )
        return base

    def public_url(self, path: str) -> str:
        """`path` (starting with "/") on the public base URL."""
        return self.public_base_url + path

    # tracking (the intake): how many stream shards the campaigns' keys are spread over (a
    # campaign's keys and its events' stream share one hash tag), where the data-centre CIDR
    # list is (empty: the sample shipped in api/tracking/), the least time a person takes
    # between seeing an ad and clicking it, and the invalid-traffic rules decided at intake
    tracking_shards: int = 8
    datacenter_ranges_file: str = ""
    min_click_ms: int = 500
    ivt_bots: bool = True
    ivt_datacenter: bool = True
    # rules the tracking writer decides: events a minute per truncated IP (/24, /48) and per
    # publisher past which they are invalid (rate_ip, rate_publisher); 0 for no limit
    tracking_rate_ip_per_minute: int = 300
    tracking_rate_publisher_per_minute: int = 30_000
    # analytics: wallets that may read the whole network's analytics
    analytics_admin_wallets: list[str] = []

    # settlement: the escrow's and the payout's SETTLER keys (one process may hold only one of
    # them: `python -m api.settlement run --step spend|post`), how long a billable event waits
    # for invalid-traffic rules before its epoch is settled, where the public artefacts are
    # written, the URL they are published under (empty: the API's /api/v1/settlement/
    # artefacts/), and how often the scheduler runs it
    escrow_settler_private_key: str = ""
    payout_settler_private_key: str = ""
    ivt_hold_seconds: int = Field(default=86_400, ge=0)
    settlement_artefact_dir: str = ".run/artefacts"
    settlement_artefact_base_url: str = ""
    settlement_interval_seconds: float = Field(default=300, gt=0)
    # the watcher: the GUARDIAN key that revokes a bad pending root (empty: report only) and
    # where its reports are written
    guardian_private_key: str = ""
    watcher_report_dir: str = ".run/watcher"
    watcher_interval_seconds: float = Field(default=15, gt=0)
    # a local chain's clock can be moved forward (anvil's evm_increaseTime); the API's own
    # clock follows it by this many seconds so a served or tracked event lands in the epoch
    # the chain is in. Refused on any chain but a local one.
    clock_offset_seconds: int = 0
    # the same offset kept in a file (seconds, one integer) that every process re-reads at
    # most once a second, so `make epoch` moves the running stack's clock along with the
    # chain's; when set it replaces `clock_offset_seconds`. Local chain only.
    clock_offset_file: str = ""
    # x402 receipts are EdDSA (Ed25519) JWTs, checkable by anyone with /.well-known/jwks.json.
    # The signing key: PEM, or base64 of the 32-byte seed. Unset, it is derived from the JWT
    # secret (HKDF), the same on every worker: fine locally, production sets its own.
    # Previous public keys (PEM or base64 of 32 bytes) stay published, and their receipts
    # accepted, until removed from the list: rotate by moving the old key's public part here.
    receipt_signing_key: str = ""
    receipt_previous_public_keys: list[str] = []
    # a payer whose settlement reverted is refused new payments for this long, doubled per
    # further revert (counted over a day), up to the max
    x402_revert_cooldown_seconds: float = Field(default=60, gt=0)
    x402_revert_cooldown_max_seconds: float = Field(default=86_400, gt=0)
    # local demos and tests: a site counts as verified the moment it is added (verified_by
    # "dev"), so its slots serve ads without a DNS record or a file on a real domain. Refused
    # on any chain but a local one: elsewhere only a proven domain serves ads.
    dev_trust_sites: bool = False
    # which routes this API process serves: "all", or "serving" (the ad endpoint, tracking,
    # receipts' public keys and the ops endpoints only) for replicas that scale the hot path
    api_role: Literal["all", "serving"] = "all"
    # how far in the future a sign-in message's issuedAt may be: a wallet's clock runs a little
    # ahead; one issued years ahead would stay fresh for years
    siwe_clock_skew_seconds: int = Field(default=60, ge=0)

    @model_validator(mode="after")
    def _offset_local_only(self) -> Settings:
        for name, value in (
            ("BUZZER_CLOCK_OFFSET_SECONDS", self.clock_offset_seconds),
            ("BUZZER_CLOCK_OFFSET_FILE", self.clock_offset_file),
        ):
            if value and self.chain_id not in LOCAL_CHAIN_IDS:
                raise ValueError(
                    f"{name} is for a local chain only"
                    f" ({sorted(LOCAL_CHAIN_IDS)}); chain {self.chain_id} keeps real time"
                )
        return self

    @model_validator(mode="after")
    def _trust_sites_local_only(self) -> Settings:
        if self.dev_trust_sites and self.chain_id not in LOCAL_CHAIN_IDS:
            raise ValueError(
                "BUZZER_DEV_TRUST_SITES is for a local chain only"
                f" ({sorted(LOCAL_CHAIN_IDS)}); on chain {self.chain_id} a site serves ads"
                " once its domain is verified"
            )
        return self

    def now(self) -> float:
        """The API's clock: real time, plus the local chain's offset."""
        real = time.time()
        if self.clock_offset_file:
            return real + _offset_in(self.clock_offset_file, real)
        return real + self.clock_offset_seconds


_offsets: dict[str, tuple[float, int]] = {}  # file -> (read at, offset)


def _offset_in(path: str, now: float) -> int:
    """The offset written in `path`, read again once a second at most; 0 while the file is
    missing or holds no integer (it is being rewritten)."""
    read_at, offset = _offsets.get(path, (-1.0, 0))
    if now - read_at >= 1.0 or now < read_at:
        try:
            with open(path, encoding="ascii") as file:
                offset = int(file.read().strip() or 0)
        except (OSError, ValueError):
            pass  # keep the last good value
        _offsets[path] = (now, offset)
    return offset


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
