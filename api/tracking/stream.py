"""The tracking stream: what the intake appends and the writer reads, and the Redis keys
of the budget model.

Every key one script touches shares a hash tag, so each script runs on Redis Cluster: a
campaign's keys and the stream shard its events go to are all tagged `{b<k>}` with
k = campaign_id mod `shards` (events without a readable campaign go to shard 0).

Budget model, per campaign (atomic units of its token):
- `reserved`: budget held for CPM impressions not billed yet: a worker's lease
  (`api.ads.leases`: a block of impressions, its unserved part given back when it closes)
  and served impressions whose token is still live (an impression turns its price into
  billed spend; what was never billed is released once the last token can no longer be
  used: `served` is the sorted set of live leases, and of single serves, by that moment);
- `billed`: billed spend not settled yet (settlement takes off what it moved out of escrow);
- free budget = escrow balance − billed − reserved, never negative.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

STREAM_VERSION = "2"
# A version 2 entry holds four fields: `verdict`, `billed` and `epoch` (set by the intake's
# script) and `v2`, a JSON array of the values of PACKED_FIELDS in that order. Appending,
# storing and reading 4 fields instead of 22 is most of what a stream entry costs Redis and
# the writer. A version 1 entry (before an upgrade) holds every field of TrackedEvent by name.
PACKED = "v2"
GROUP = "writers"  # the writers' consumer group on every shard
DEFAULT_SHARDS = 8


def shard_of(campaign_id: int | None, shards: int) -> int:
    return 0 if campaign_id is None else campaign_id % shards


def tag(campaign_id: int | None, shards: int) -> str:
    return f"{{b{shard_of(campaign_id, shards)}}}"


def stream_key(shard: int) -> str:
    return f"buzzer:{{b{shard}}}:events"


def stream_keys(shards: int) -> list[str]:
    return [stream_key(k) for k in range(shards)]


class Keys:
    """The Redis keys of one campaign, all in one hash slot."""

    def __init__(self, campaign_id: int, shards: int) -> None:
        t = tag(campaign_id, shards)
        self.campaign_id = campaign_id
        self.stream = stream_key(shard_of(campaign_id, shards))
        self.reserved = f"buzzer:{t}:reserved:{campaign_id}"
        self.billed = f"buzzer:{t}:billed:{campaign_id}"
        self.served = f"buzzer:{t}:served:{campaign_id}"  # zset serve_id → token expiry (s)
        self._t = t

    def epoch(self, epoch: int) -> str:
        """Spend reserved or billed in one escrow epoch (the max per epoch holds to it)."""
        return f"buzzer:{self._t}:epoch:{self.campaign_id}:{epoch}"

    def settled(self, epoch: int) -> str:
        """Set once settlement took the epoch's settled spend out of `billed`."""
        return f"buzzer:{self._t}:settled:{self.campaign_id}:{epoch}"

    def views(self, day: str) -> str:
        """Hash visitor → serves today, for the frequency cap."""
        return f"buzzer:{self._t}:views:{self.campaign_id}:{day}"

    def serve(self, serve_id: str) -> str:
        """Hash of one live serve: price reserved and its epoch."""
        return f"buzzer:{self._t}:serve:{serve_id}"

    def used(self, serve_id: str, kind: str) -> str:
        """First use of a token (value: when, in ms)."""
        return f"buzzer:{self._t}:used:{serve_id}:{kind}"

    def unbilled(self, serve_id: str, kind: str) -> str:
        """Set once the writer took back an event's billing (it failed a later rule)."""
        return f"buzzer:{self._t}:unbilled:{serve_id}:{kind}"


@dataclass(frozen=True)
class TrackedEvent:
    """One stream entry: every field a string on the wire, '' for none. `verdict` is ''
    when the intake found nothing wrong (the writer may still reject it: rate rules and the
    redemption table), else the reason. `billed` is '1' when the intake turned it into
    billed spend (so a rejection by the writer must take that back)."""

    kind: str  # impression | click
    received_ms: str  # when the API received it (ms since the epoch, UTC)
    verdict: str
    billed: str
    chain_id: str
    serve_id: str = ""
    campaign_id: str = ""
    slot_id: str = ""
    publisher: str = ""
    token: str = ""
    bid_model: str = ""
    bid: str = ""
    price: str = ""
    served_at: str = ""  # token issued_at (s)
    epoch: str = ""  # the escrow epoch of the serve
    ip_prefix: str = ""
    visitor: str = ""
    device: str = ""
    geo: str = ""
    v: str = STREAM_VERSION

    def fields(self) -> dict[str, str]:
        return asdict(self)

    def entry(self) -> dict[str, str]:
        """The stream entry as the intake appends it (version 2)."""
        return {
            "verdict": self.verdict,
            "billed": self.billed,
            "epoch": self.epoch,
            PACKED: pack([getattr(self, name) for name in PACKED_FIELDS]),
        }

    @classmethod
    def parse(cls, entry: dict[bytes | str, bytes | str]) -> TrackedEvent:
        """A stream entry of either version (fields it does not know are ignored)."""
        names = {f.name for f in fields(cls)}
        values = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in entry.items()
        }
        packed = values.pop(PACKED, None)
        if packed is not None:
            values |= dict(zip(PACKED_FIELDS, json.loads(packed), strict=True))
            values["v"] = PACKED.removeprefix("v")
        return cls(**{k: v for k, v in values.items() if k in names})


# the fields a version 2 entry packs into its `v2` array, in this order
PACKED_FIELDS = tuple(
    f.name for f in fields(TrackedEvent) if f.name not in {"verdict", "billed", "epoch", "v"}
)


def pack(values: list[str]) -> str:
    """The `v2` field of an entry: the values of PACKED_FIELDS."""
    return json.dumps(values, separators=(",", ":"))
