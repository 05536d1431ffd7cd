"""API settings, from the environment (`BUZZER_` prefix, plus the usual service URLs)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # the token campaigns pay in unless they name another (default: the deployment's TestUSDC)
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

    # analytics: wallets that may read the whole network's analytics
    analytics_admin_wallets: list[str] = []


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
