"""The tracking jobs the scheduler runs, on a real Postgres: old redemption rows are
pruned once no token could still use them, and the day partitions are made ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from api.core.db import make_engine
from api.tracking import jobs
from migrations import upgrade
from tests.support.fixtures import database_url  # noqa: F401 (fixtures used by name)


def test_redemptions_older_than_any_live_token_are_pruned(settings, database_url):  # noqa: F811
    upgrade(database_url)
    now = datetime.now(UTC)
    keep_for = timedelta(seconds=settings.ad_token_ttl_seconds + 86_400)
    rows = {
        "old:impression": now - keep_for - timedelta(minutes=1),
        "recent:impression": now - keep_for + timedelta(minutes=5),
        "new:click": now,
    }
    engine = make_engine(database_url)
    with engine.begin() as db:
        for token_id, at in rows.items():
            db.execute(
                text(
                    "INSERT INTO ad_event_redemptions (token_id, event_id, redeemed_at)"
                    " VALUES (:t, '1-0', :at)"
                ),
                {"t": token_id, "at": at},
            )

    jobs.prune_redemptions(settings.model_copy(update={"database_url": database_url}))

    with engine.connect() as db:
        left = set(db.execute(text("SELECT token_id FROM ad_event_redemptions")).scalars())
    engine.dispose()
    assert left == {"recent:impression", "new:click"}


def test_day_partitions_are_made_ahead(settings, database_url):  # noqa: F811
    pytest.importorskip("api.tracking.partitions")  # the writer's module
    upgrade(database_url)
    jobs.create_partitions(settings.model_copy(update={"database_url": database_url}))
    engine = make_engine(database_url)
    with engine.connect() as db:
        tables = set(
            db.execute(
                text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'ad_events_p%'")
            ).scalars()
        )
    engine.dispose()
    days = [datetime.now(UTC).date() + timedelta(days=d) for d in range(jobs.DAYS_AHEAD)]
    assert {f"ad_events_p{day:%Y%m%d}" for day in days} <= tables
