"""The scheduler on a real Postgres: however many schedulers run, a job runs once at a time
(its advisory lock); a failing job is reported with its traceback and the others go on; a job
whose module is not merged yet is logged once; SIGTERM and SIGINT stop it at once."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from api.core.settings import Settings
from api.scheduler import STOP_GRACE_SECONDS, Job, Outcome, Scheduler, lock_key
from migrations import libpq_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.api.test_scheduler"


def _record(settings: Settings, name: str, seconds: float) -> None:
    started = time.time()
    time.sleep(seconds)
    with psycopg.connect(libpq_url(settings.database_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_runs (name, started, ended) VALUES (%s, %s, %s)",
            (name, started, time.time()),
        )


def slow(settings: Settings) -> None:
    _record(settings, "slow", 0.5)


def fast(settings: Settings) -> None:
    _record(settings, "fast", 0.0)


def explode(settings: Settings) -> None:
    raise RuntimeError("the job's own bug")


@pytest.fixture
def settings(database_url: str) -> Settings:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE job_runs (name text, started float8, ended float8)")
    return Settings(database_url=database_url)


def runs(settings: Settings, name: str) -> list[tuple[float, float]]:
    with psycopg.connect(libpq_url(settings.database_url)) as conn:
        rows = conn.execute(
            "SELECT started, ended FROM job_runs WHERE name = %s ORDER BY started", (name,)
        ).fetchall()
    return [(started, ended) for started, ended in rows]


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_schedulers_racing_on_a_job_run_it_once(settings):
    jobs = [Job("slow", 3600, f"{HERE}:slow")]
    schedulers = [Scheduler(settings, jobs), Scheduler(settings, jobs)]
    together = threading.Barrier(2)
    outcomes: list[Outcome] = []

    def race(scheduler: Scheduler) -> None:
        together.wait()
        outcomes.append(scheduler.run_once("slow"))

    threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [Outcome.busy, Outcome.ran]
    assert len(runs(settings, "slow")) == 1


def test_running_schedulers_never_run_a_job_twice_at_once(settings):
    jobs = [Job("slow", 0.2, f"{HERE}:slow")]
    schedulers = [Scheduler(settings, jobs) for _ in range(3)]
    for scheduler in schedulers:
        scheduler.start()
    try:
        wait_until(lambda: len(runs(settings, "slow")) >= 3)
    finally:
        for scheduler in schedulers:
            assert scheduler.stop()

    done = runs(settings, "slow")
    for (_, ended), (next_started, _) in itertools.pairwise(done):
        assert ended <= next_started, done


def test_a_failing_job_is_reported_and_the_others_go_on(settings, caplog):
    caplog.set_level(logging.INFO, logger="api.scheduler")
    jobs = [Job("boom", 0.2, f"{HERE}:explode"), Job("fast", 0.2, f"{HERE}:fast")]
    scheduler = Scheduler(settings, jobs)
    scheduler.start()
    try:
        wait_until(
            lambda: (
                len(runs(settings, "fast")) >= 3
                and sum("boom: failed" in r.getMessage() for r in caplog.records) >= 2
            )
        )
    finally:
        assert scheduler.stop()

    failure = next(r for r in caplog.records if "boom: failed" in r.getMessage())
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None and "the job's own bug" in str(failure.exc_info[1])


def test_a_job_whose_module_is_not_there_yet_is_logged_once(settings, caplog):
    caplog.set_level(logging.INFO, logger="api.scheduler")
    jobs = [Job("later", 0.1, "api.not_merged_yet.jobs:run"), Job("fast", 0.1, f"{HERE}:fast")]
    scheduler = Scheduler(settings, jobs)
    scheduler.start()
    try:
        wait_until(lambda: len(runs(settings, "fast")) >= 3)
    finally:
        assert scheduler.stop()

    missing = [r for r in caplog.records if "api.not_merged_yet.jobs is not installed" in r.message]
    assert len(missing) == 1 and missing[0].levelno == logging.WARNING
    assert scheduler.run_once("later") == Outcome.missing


def scheduler_process(database_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "api.scheduler", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_scheduler(database_url, sig):
    """SIGTERM or SIGINT ends it cleanly (exit 0), a running job given its grace at most."""
    process = scheduler_process(database_url)
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:  # the jobs are scheduled once each is logged with its interval
        lines.append(line)
        if "analytics_rollup: every" in line:
            break
    assert process.poll() is None, "".join(lines)

    process.send_signal(sig)
    assert process.wait(timeout=STOP_GRACE_SECONDS + 10) == 0


def test_once_takes_the_job_lock_too(database_url):
    with psycopg.connect(libpq_url(database_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key("quality_score"),))
        busy = scheduler_process(database_url, "--once", "quality_score")
        _, err = busy.communicate(timeout=30)
    assert busy.returncode == 3, err
    assert "running in another scheduler" in err
