"""The publisher's off-chain profile. On-chain facts live in the indexer's
`publishers_onchain`; this table holds what only the publisher tells us."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class PublisherProfile(SQLModel, table=True):
    __tablename__ = "publisher_profiles"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    wallet: str = Field(unique=True, index=True, description="lowercase hex address")
    email: str | None = None
    website_url: str
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
