"""The quality score: the formula's edges as properties, and the job that writes changed
scores on-chain with the ORACLE key and sends nothing when nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlmodel import Session

from api.publishers.quality import (
    FULL_AGE_SECONDS,
    QualityInputs,
    quality_score,
    read_publisher,
    recompute,
)
from chain.rpc import Rpc
from migrations import sqlalchemy_url, upgrade
from tests.indexer.helpers import index_to_head
from tests.support.chain import dev_account

PUBLISHER, SUSPENDED = 11, 12


def test_formula_points():
    new = QualityInputs(events=0, verified=0, domain_verified=False, age_seconds=0)
    assert quality_score(new) == 40  # the traffic prior alone: 50 × 0.8
    veteran = QualityInputs(10_000, 10_000, True, FULL_AGE_SECONDS * 2)
    assert quality_score(veteran) == 100
    botnet = QualityInputs(10_000, 0, True, FULL_AGE_SECONDS)
    assert quality_score(botnet) == 50
    with pytest.raises(ValueError):
        quality_score(QualityInputs(1, 2, False, 0))


@given(
    events=st.integers(0, 10**9),
    share=st.fractions(0, 1),
    domain=st.booleans(),
    age=st.integers(-(10**6), 10**9),
)
def test_score_is_bounded_and_monotonic(events, share, domain, age):
    verified = int(events * share)
    score = quality_score(QualityInputs(events, verified, domain, age))
    assert 0 <= score <= 100
    if verified < events:
        assert quality_score(QualityInputs(events, verified + 1, domain, age)) >= score
    if not domain:
        assert quality_score(QualityInputs(events, verified, True, age)) == pytest.approx(
            score + 25, abs=1
        )
    assert quality_score(QualityInputs(events, verified, domain, age + 86_400)) >= score


def test_the_job_writes_changed_scores_and_only_those(
    settings, chain, database_url, anvil, deployments_dir, monkeypatch
):
    monkeypatch.setenv("BUZZER_DEPLOYMENTS_DIR", str(deployments_dir))
    upgrade(database_url)
    live = settings.model_copy(
        update={
            "database_url": database_url,
            "rpc_url": anvil.url,
            "oracle_private_key": "0x" + dev_account(2).key.hex().removeprefix("0x"),
        }
    )
    chain.register_publisher(PUBLISHER, "quality-site")
    chain.register_publisher(SUSPENDED, "suspended-site")
    chain.set_suspended(SUSPENDED)
    index_to_head(chain.rpc_url, database_url)
    wallet = chain.account(PUBLISHER).lower()
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as db:
        today = datetime.now(UTC).date()
        for days_ago, events, verified in [(1, 600, 570), (5, 400, 380), (45, 1000, 0)]:
            db.execute(
                text(
                    "INSERT INTO publisher_traffic_daily (wallet, day, events, verified)"
                    " VALUES (:w, :d, :e, :v)"
                ),
                {"w": wallet, "d": today - timedelta(days=days_ago), "e": events, "v": verified},
            )
    expected = quality_score(QualityInputs(1000, 950, False, 0))  # day 45 is outside 30 days

    with Session(engine) as session:
        first = recompute(session, live)
        assert [(c.wallet, c.before, c.after) for c in first] == [(wallet, 0, expected)]
        assert read_publisher(Rpc(anvil.url), 1337, wallet).quality_score == expected
        assert recompute(session, live) == []  # nothing changed, nothing sent

        chain.set_domain_verified(PUBLISHER, "quality.example")
        (second,) = recompute(session, live)
        assert (second.before, second.after) == (expected, expected + 25)
        assert second.tx_hash is not None
        assert read_publisher(Rpc(anvil.url), 1337, chain.account(SUSPENDED)).quality_score == 0
    engine.dispose()
