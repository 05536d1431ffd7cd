"""What the ad server decides with, kept in memory: every servable campaign (as a matching
`Index`) and every slot with its publisher's on-chain facts.

The snapshot comes from Postgres and is shared through Redis (5 min TTL) so that workers
do not each query the database. A version counter in Redis (`buzzer:ads:version`) is bumped
by campaign and slot edits and by the indexer when it commits chain events; a worker
looks at it at most once a second and reloads when it moved. With Redis down the worker keeps
its snapshot and reloads from Postgres every 30 s; with Postgres down it keeps what it has."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Engine, text
from sqlmodel import Session

from api.ads.matching import Candidate, Creative, EpochClock, Index, MaxSpend
from catalog_version import VERSION_KEY

log = logging.getLogger("api.ads")

SNAPSHOT_KEY = "buzzer:ads:snapshot"
SNAPSHOT_TTL = 300
CHECK_EVERY = 1.0
RELOAD_WITHOUT_REDIS = 30.0


def bump(cache: redis.Redis) -> None:
    """Tell every worker that campaigns or slots changed."""
    try:
        cache.incr(VERSION_KEY)
    except redis.RedisError:
        log.warning("could not bump the ad catalog version; workers reload within 5 min")


@dataclass(frozen=True)
class SlotInfo:
    slot_id: str
    wallet: str  # the publisher's registered wallet
    format: str
    width: int
    height: int
    status: str
    agent_price: int | None
    ad_free_price: int | None
    no_fill_price: int | None
    category: str | None
    pub_id: str | None  # None: not registered on-chain
    payment_wallet: str | None
    quality_score: int
    suspended: bool
    verified: bool = False  # the slot's site proved its domain (a slot with no site: not)


CANDIDATES = text(
    """
    SELECT c.campaign_id, c.advertiser, c.token, c.bid, d.bid_model, d.format, d.landing_url,
           d.targeting, d.start_date, d.end_date, d.unverified_inventory, b.balance,
           c.max_spend_per_epoch,
           c.previous_max_spend_per_epoch, c.max_spend_effective_epoch,
           coalesce(json_agg(json_build_array(k.cid, k.content_type, k.width, k.height)
                    ORDER BY k.created_at) FILTER (WHERE k.cid IS NOT NULL), '[]') AS creatives
    FROM campaign_drafts d
    JOIN campaigns_onchain c ON c.chain_id = :chain AND c.campaign_id = d.onchain_id
    JOIN escrow_balances b ON b.chain_id = c.chain_id AND b.campaign_id = c.campaign_id
    LEFT JOIN withdraw_requests w ON w.chain_id = c.chain_id AND w.campaign_id = c.campaign_id
    LEFT JOIN creatives k ON k.campaign_id = d.id
    WHERE c.status = 1 AND b.balance > 0 AND c.metadata_hash = d.metadata_hash
      AND c.bid = d.bid AND (w.status IS NULL OR w.status <> 'pending')
      AND (d.end_date IS NULL OR d.end_date > now())
    GROUP BY c.campaign_id, c.advertiser, c.token, c.bid, d.id, b.balance, c.max_spend_per_epoch,
             c.previous_max_spend_per_epoch, c.max_spend_effective_epoch
    """
)

# The registry's spend clock, as its constructor announced it and the indexer recorded it.
EPOCH_CLOCK = text(
    """
    SELECT args->>'genesis' AS genesis, args->>'epoch_length' AS epoch_length
    FROM chain_config
    WHERE chain_id = :chain AND contract = 'CampaignRegistry' AND event = 'EpochClockSet'
    """
)

SLOTS = text(
    """
    SELECT s.slot_id, p.wallet, s.format, s.width, s.height, s.status, s.agent_price,
           s.ad_free_price, s.no_fill_price, coalesce(t.category, p.category) AS category,
           o.pub_id, o.payment_wallet,
           coalesce(o.quality_score, 0) AS quality_score, coalesce(o.suspended, false) AS suspended,
           t.verified_at IS NOT NULL AS verified
    FROM ad_slots s
    JOIN publisher_profiles p ON p.id = s.publisher_id
    LEFT JOIN publisher_sites t ON t.id = s.site_id
    LEFT JOIN publishers_onchain o ON o.chain_id = :chain AND o.wallet = p.wallet
    """
)


CTR_WINDOW_DAYS = 30

# Each campaign's verified clicks and impressions over the last CTR_WINDOW_DAYS UTC days
# (today's hours so far included), from the analytics rollup: what a CPC campaign's eCPM is
# ranked by, smoothed by the prior (`Candidate.ecpm`).
MEASURED = text(
    """
    SELECT campaign_id, sum(verified_clicks) AS clicks, sum(verified_impressions) AS impressions
    FROM analytics_daily
    WHERE grain = 'c' AND chain_id = :chain
      AND day > (now() AT TIME ZONE 'UTC')::date - :days
    GROUP BY campaign_id
    """
)


def measured(session: Session, chain_id: int) -> dict[int, tuple[int, int]]:
    """Verified (clicks, impressions) per on-chain campaign id over the CTR window."""
    rows = session.execute(MEASURED, {"chain": chain_id, "days": CTR_WINDOW_DAYS})
    return {int(r.campaign_id): (int(r.clicks), int(r.impressions)) for r in rows}


def _timestamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def epoch_clock(session: Session, chain_id: int) -> EpochClock | None:
    """The CampaignRegistry's clock as its constructor announced it, once indexed."""
    row = session.execute(EPOCH_CLOCK, {"chain": chain_id}).first()
    if row is None:
        return None
    return EpochClock(genesis=int(row.genesis), length=int(row.epoch_length))


def max_spend_schedule(row: Any) -> MaxSpend:
    """A campaign's max per epoch from the indexer's projection: the newest from its
    effective epoch on, the one before it until then (0 for the registration's value)."""
    return (
        (0, int(row.previous_max_spend_per_epoch)),
        (int(row.max_spend_effective_epoch), int(row.max_spend_per_epoch)),
    )


def load(engine: Engine, chain_id: int) -> dict[str, Any]:
    """The snapshot as plain JSON-able data, straight from Postgres."""
    from api.campaigns.service import link_registered

    with Session(engine) as session:
        link_registered(session, chain_id)
        clock = epoch_clock(session, chain_id)
        ctr = measured(session, chain_id)
        campaigns = []
        for row in session.execute(CANDIDATES, {"chain": chain_id}):
            targeting = row.targeting or {}
            clicks, impressions = ctr.get(int(row.campaign_id), (0, 0))
            campaigns.append(
                {
                    "campaign_id": int(row.campaign_id),
                    "advertiser": row.advertiser,
                    "token": row.token,
                    "bid_model": row.bid_model,
                    "bid": int(row.bid),
                    "format": row.format,
                    "landing_url": row.landing_url,
                    "geo": targeting.get("geo", []),
                    "devices": targeting.get("devices", []),
                    "categories": targeting.get("categories", []),
                    "quality_min": int(targeting.get("quality_min", 0)),
                    "balance": int(row.balance),
                    "max_spend": max_spend_schedule(row),
                    "starts_at": _timestamp(row.start_date),
                    "ends_at": _timestamp(row.end_date),
                    "creatives": row.creatives,
                    "clicks": clicks,
                    "impressions": impressions,
                    "unverified_inventory": row.unverified_inventory,
                }
            )
        slots = [dict(row._mapping) for row in session.execute(SLOTS, {"chain": chain_id})]
    return {
        "campaigns": campaigns,
        "slots": slots,
        "clock": None if clock is None else [clock.genesis, clock.length],
    }


def _candidate(data: dict[str, Any]) -> Candidate:
    return Candidate(
        **{
            **data,
            "geo": frozenset(data["geo"]),
            "devices": frozenset(data["devices"]),
            "categories": frozenset(data["categories"]),
            "creatives": tuple(Creative(*c) for c in data["creatives"]),
            "max_spend": tuple((int(first), int(amount)) for first, amount in data["max_spend"]),
        }
    )


@dataclass(frozen=True)
class Snapshot:
    index: Index
    slots: dict[str, SlotInfo]
    loaded_at: float
    clock: EpochClock | None = None  # None until the registry's deployment is indexed
    campaigns: dict[int, Candidate] = field(default_factory=dict)  # the index's, by id

    @classmethod
    def of(cls, data: dict[str, Any]) -> Snapshot:
        candidates = [_candidate(c) for c in data["campaigns"] if c["creatives"]]
        slots = {s["slot_id"]: SlotInfo(**s) for s in data["slots"]}
        clock = EpochClock(*data["clock"]) if data.get("clock") else None
        by_id = {c.campaign_id: c for c in candidates}
        snapshot = cls(Index.build(candidates), slots, time.monotonic(), clock, by_id)
        # hundreds of thousands of long-lived objects: keep the cyclic collector from walking
        # them on every full collection (a pause of tens of ms under load); refcounting
        # still frees an old snapshot once nothing points at it
        gc.freeze()
        return snapshot


EMPTY = Snapshot(Index(), {}, 0.0)


class Catalog:
    """A worker's snapshot, refreshed by a background thread when the version in Redis
    moves, so that a request never waits for Postgres."""

    def __init__(self, engine: Engine | None, cache: redis.Redis, chain_id: int) -> None:
        self.engine = engine
        self.cache = cache
        self.chain_id = chain_id
        self.snapshot = EMPTY
        self.version: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Snapshot:
        return self.snapshot

    def refresh(self) -> Snapshot:
        """Reload now, whatever the version says (start-up and tests): from Postgres, never
        from the shared copy, which may predate what was just written; the new snapshot is
        shared under the current version for the other workers."""
        with self._lock:
            try:
                version: str | None = str(self.cache.get(VERSION_KEY) or "0")
            except redis.RedisError:
                version = None
            self._from_database(store=version is not None, version=version or "0")
            self.version = version
        return self.snapshot

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._follow, name="ad-catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        while not self._stop.wait(CHECK_EVERY):
            try:
                with self._lock:
                    self._refresh(time.monotonic())
            except Exception:  # never let the follower die
                log.exception("ad catalog refresh failed")

    def _refresh(self, now: float) -> None:
        try:
            version = str(self.cache.get(VERSION_KEY) or "0")
        except redis.RedisError:
            if now - self.snapshot.loaded_at >= RELOAD_WITHOUT_REDIS:
                self._from_database(store=False)
            return
        stale = now - self.snapshot.loaded_at >= SNAPSHOT_TTL
        if version == self.version and not stale:
            return
        try:
            shared = self.cache.get(f"{SNAPSHOT_KEY}:{version}")
        except redis.RedisError:
            shared = None
        if shared is not None and not stale:
            self.snapshot = Snapshot.of(json.loads(shared))
        else:
            self._from_database(store=True, version=version)
        self.version = version

    def _from_database(self, store: bool, version: str = "0") -> None:
        if self.engine is None:
            return
        try:
            data = load(self.engine, self.chain_id)
        except Exception:  # Postgres down: keep serving what we have
            log.exception("could not load the ad catalog; serving the previous snapshot")
            return
        self.snapshot = Snapshot.of(data)
        if store:
            with contextlib.suppress(redis.RedisError):
                self.cache.set(f"{SNAPSHOT_KEY}:{version}", json.dumps(data), ex=SNAPSHOT_TTL)

    def slot(self, slot_id: str) -> SlotInfo | None:
        """A slot from the snapshot, or, if it is newer than the snapshot, from Postgres."""
        found = self.current().slots.get(slot_id)
        if found is not None or self.engine is None:
            return found
        try:
            with self.engine.connect() as db:
                row = db.execute(
                    text(SLOTS.text + " WHERE s.slot_id = :slot"),
                    {"chain": self.chain_id, "slot": slot_id},
                ).first()
        except Exception:
            return None
        return SlotInfo(**row._mapping) if row is not None else None
