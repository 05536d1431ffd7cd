"""The publisher quality score: a transparent formula, recomputed by a job and written
on-chain by the ORACLE key when it changes. Campaigns set a minimum score.

    score = 50 · traffic + 25 · domain + 25 · age, rounded half up: 0–100

- traffic: the share of the last 30 days' impressions and clicks that passed invalid-traffic
  filtering, smoothed as if 10 more events at 80 % had been seen, so a new site is not judged
  on its first handful of events (no traffic yet → 0.8);
- domain: 1 once the domain is verified on-chain, else 0;
- age: days since on-chain registration over 90, at most 1.

`python -m api.publishers.quality [--dry-run]` runs it once; the scheduler
(`python -m api.scheduler`) runs `job` every `QUALITY_INTERVAL_SECONDS` (an hour)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from eth_abi import decode
from sqlalchemy import text
from sqlmodel import Session

from api.core.chain import ChainError, call_data, chain_time, deployment, send_as, transaction
from api.core.settings import Settings
from chain.rpc import Rpc, RpcError, RpcUnavailable

log = logging.getLogger("api.publishers.quality")

WINDOW_DAYS = 30
PRIOR_EVENTS = 10
PRIOR_SHARE = Fraction(8, 10)
FULL_AGE_SECONDS = 90 * 86_400
ZERO_HASH = b"\x00" * 32


@dataclass(frozen=True)
class QualityInputs:
    events: int
    verified: int
    domain_verified: bool
    age_seconds: int


def quality_score(inputs: QualityInputs) -> int:
    if not 0 <= inputs.verified <= inputs.events:
        raise ValueError("verified events must be between 0 and all events")
    traffic = (inputs.verified + PRIOR_SHARE * PRIOR_EVENTS) / (inputs.events + PRIOR_EVENTS)
    domain = 1 if inputs.domain_verified else 0
    age = Fraction(min(max(inputs.age_seconds, 0), FULL_AGE_SECONDS), FULL_AGE_SECONDS)
    return int(50 * traffic + 25 * domain + 25 * age + Fraction(1, 2))  # rounded half up


@dataclass(frozen=True)
class OnChainPublisher:
    wallet: str
    quality_score: int
    domain_verified: bool
    registered_at: int
    suspended: bool


def read_publisher(rpc: Rpc, chain_id: int, wallet: str) -> OnChainPublisher:
    """`PublisherRegistry.get_publisher` straight from the node: the score to compare with
    must be the chain's, not a possibly lagging index."""
    registry = deployment(chain_id).address("PublisherRegistry")
    call = {"to": registry, "data": call_data("PublisherRegistry", "get_publisher", wallet)}
    try:
        result = rpc.call("eth_call", [call, "latest"])
    except (RpcError, RpcUnavailable) as exc:
        raise ChainError(f"get_publisher({wallet}) failed: {exc}") from None
    ((_, _, score, domain_hash, registered_at, suspended),) = decode(
        ["(string,address,uint256,bytes32,uint256,bool)"], bytes.fromhex(result[2:])
    )
    return OnChainPublisher(wallet, score, domain_hash != ZERO_HASH, registered_at, suspended)


@dataclass(frozen=True)
class ScoreChange:
    wallet: str
    before: int
    after: int
    tx_hash: str | None


def recompute(
    session: Session,
    settings: Settings,
    *,
    dry_run: bool = False,
    progress: Callable[[str], Any] = lambda _: None,
) -> list[ScoreChange]:
    """Score every registered, unsuspended publisher; send `set_quality_score` for each
    score that differs from the chain's. Safe to rerun at any point: an unchanged score
    sends nothing, and a score already written is found on-chain."""
    wallets = [
        row.wallet
        for row in session.execute(
            text(
                "SELECT wallet FROM publishers_onchain WHERE chain_id = :chain"
                " AND NOT suspended ORDER BY wallet"
            ),
            {"chain": settings.chain_id},
        )
    ]
    since = datetime.now(UTC).date() - timedelta(days=WINDOW_DAYS)
    traffic = {
        row.wallet: (int(row.events), int(row.verified))
        for row in session.execute(
            text(
                "SELECT wallet, sum(events) AS events, sum(verified) AS verified"
                " FROM publisher_traffic_daily WHERE day > :since GROUP BY wallet"
            ),
            {"since": since},
        )
    }
    now = chain_time(settings.rpc_url)
    changes: list[ScoreChange] = []
    rpc = Rpc(settings.rpc_url, timeout=10, retries=2)
    try:
        for done, wallet in enumerate(wallets, 1):
            change = _rescore(rpc, settings, wallet, traffic, now, dry_run)
            if change is not None:
                changes.append(change)
                progress(f"[{done}/{len(wallets)}] {wallet}: {change.before} → {change.after}")
    finally:
        rpc.close()
    return changes


def _rescore(
    rpc: Rpc,
    settings: Settings,
    wallet: str,
    traffic: dict[str, tuple[int, int]],
    now: int,
    dry_run: bool,
) -> ScoreChange | None:
    """One publisher's new score, sent on-chain if it changed (unless `dry_run`)."""
    onchain = read_publisher(rpc, settings.chain_id, wallet)
    events, verified = traffic.get(wallet, (0, 0))
    score = quality_score(
        QualityInputs(events, verified, onchain.domain_verified, now - onchain.registered_at)
    )
    if onchain.suspended or score == onchain.quality_score:
        return None
    tx_hash = None
    if not dry_run:
        tx = transaction(
            settings.chain_id,
            "PublisherRegistry",
            "set_quality_score",
            wallet,
            score,
            description=f"Quality score of {wallet}: {onchain.quality_score} → {score}",
        )
        tx_hash = send_as(settings.rpc_url, settings.oracle_private_key, tx)
    return ScoreChange(wallet, onchain.quality_score, score, tx_hash)


def job(settings: Settings) -> None:
    """The scheduler's run: recompute every score and write the changed ones on-chain."""
    from api.core.db import make_engine

    if not settings.oracle_private_key:
        log.warning("BUZZER_ORACLE_PRIVATE_KEY is not set: quality scores are not recomputed")
        return
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            changes = recompute(session, settings, progress=log.info)
    finally:
        engine.dispose()
    log.info("changed %d quality score(s)", len(changes))


def main(argv: list[str] | None = None) -> int:
    from api.core.db import make_engine

    parser = argparse.ArgumentParser(
        prog="python -m api.publishers.quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dry-run", action="store_true", help="print changes, send nothing")
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.database_url:
        print("error: DATABASE_URL is not set", file=sys.stderr)
        return 2
    if not args.dry_run and not settings.oracle_private_key:
        print("error: BUZZER_ORACLE_PRIVATE_KEY is not set (or use --dry-run)", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            changes = recompute(session, settings, dry_run=args.dry_run, progress=print)
    except ChainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb} {len(changes)} score(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
