"""The scheduler: the one process that runs the periodic jobs (quality scores, partitions,
expired reservations, redemption pruning, analytics rollups, settlement).

    python -m api.scheduler                      # every job on its interval, until SIGTERM/SIGINT
    python -m api.scheduler --once quality_score # one job now, then exit
    python -m api.scheduler --list               # the jobs and their intervals

Each run holds a Postgres advisory lock named after its job on a connection of its own, so
however many schedulers run (a second replica, an operator's `--once`), a job never runs twice
at the same time: the others skip that turn. A job that fails is logged with its traceback and
runs again at its next turn; a job whose module is not installed is logged once and skipped.
A job is `Job(name, every_seconds, "module:function")`; the function takes the `Settings` and
opens what it needs itself."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import FrameType
from typing import Any

import psycopg
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from api.core.settings import Settings
from migrations import libpq_url
from observe import logs, metrics

log = logging.getLogger("api.scheduler")

STOP_GRACE_SECONDS = 5.0  # how long a stop waits for running jobs before leaving them


@dataclass(frozen=True)
class Job:
    name: str
    every_seconds: float
    target: str  # "package.module:function", imported when the job first runs
    interval_setting: str | None = None  # a `Settings` field that overrides every_seconds
    first_after_seconds: float = 0.0  # delay of the first run after the scheduler starts

    def interval(self, settings: Settings) -> float:
        if self.interval_setting is None:
            return self.every_seconds
        return float(getattr(settings, self.interval_setting))


JOBS = [
    # after a minute, so a stack that just started has indexed the chain first
    Job(
        "quality_score",
        3600,
        "api.publishers.quality:job",
        interval_setting="quality_interval_seconds",
        first_after_seconds=60,
    ),
    Job("create_partitions", 3600, "api.tracking.jobs:create_partitions"),
    Job("release_expired", 15, "api.tracking.jobs:release_expired"),
    Job("prune_redemptions", 3600, "api.tracking.jobs:prune_redemptions"),
    Job("analytics_rollup", 60, "api.analytics.jobs:rollup"),
    # every step this process holds a settler key for (none: it does nothing)
    Job(
        "settlement",
        300,
        "api.settlement.service:job",
        interval_setting="settlement_interval_seconds",
        first_after_seconds=30,
    ),
    Job("reconcile", 3600, "api.settlement.service:reconcile_job", first_after_seconds=120),
]


class Outcome(StrEnum):
    ran = "ran"
    failed = "failed"
    busy = "busy"  # another scheduler holds the job's lock
    missing = "missing"  # the job's module is not installed


def lock_key(name: str) -> int:
    """The job's advisory lock key: the first 8 bytes of sha256 of its name, as a bigint
    (the same in every process and Python version, unlike `hash`)."""
    digest = hashlib.sha256(f"buzzer.scheduler:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Scheduler:
    """Runs `jobs` against `settings`: `run_once(name)` now, or `start()` on their intervals
    in the background until `stop()`."""

    def __init__(self, settings: Settings, jobs: Sequence[Job] = JOBS) -> None:
        if not settings.database_url:
            raise ValueError("the scheduler needs DATABASE_URL (its jobs' locks live there)")
        self.settings = settings
        self.jobs = {job.name: job for job in jobs}
        self._missing: set[str] = set()
        self._running = 0
        self._idle = threading.Condition()
        self._background: BackgroundScheduler | None = None

    def run_once(self, name: str) -> Outcome:
        """Run job `name` now unless another scheduler is running it."""
        job = self.jobs[name]
        function = self._resolve(job)
        if function is None:
            return Outcome.missing
        with psycopg.connect(libpq_url(self.settings.database_url), autocommit=True) as conn:
            key = lock_key(job.name)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not row or not row[0]:
                log.info("%s: running in another scheduler; skipping this turn", job.name)
                return Outcome.busy
            try:
                return self._call(job, function)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _call(self, job: Job, function: Callable[[Settings], Any]) -> Outcome:
        started = time.monotonic()
        log.info("%s: started", job.name)
        try:
            function(self.settings)
        except Exception:
            log.exception(
                "%s: failed after %.1f s; it runs again at its next turn",
                job.name,
                time.monotonic() - started,
            )
            return Outcome.failed
        log.info("%s: done in %.1f s", job.name, time.monotonic() - started)
        return Outcome.ran

    def _resolve(self, job: Job) -> Callable[[Settings], Any] | None:
        module_name, _, attribute = job.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
                raise  # the module exists but something it imports does not: a real failure
            if job.name not in self._missing:
                self._missing.add(job.name)
                log.warning("%s: %s is not installed; skipping the job", job.name, module_name)
            return None
        function: Callable[[Settings], Any] = getattr(module, attribute)
        return function

    def _turn(self, name: str) -> None:
        """One scheduled turn; nothing a job does may stop the scheduler."""
        with self._idle:
            self._running += 1
        try:
            self.run_once(name)
        except Exception:
            log.exception("%s: could not run", name)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def start(self) -> None:
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(len(self.jobs), 1))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        now = datetime.now(UTC)
        for job in self.jobs.values():
            every = job.interval(self.settings)
            scheduler.add_job(
                self._turn,
                IntervalTrigger(seconds=every, timezone=UTC),
                args=[job.name],
                id=job.name,
                next_run_time=now + timedelta(seconds=min(job.first_after_seconds, every)),
            )
            log.info("%s: every %g s (%s)", job.name, every, job.target)
        scheduler.start()
        self._background = scheduler

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> bool:
        """Start no more runs; wait up to `grace` seconds for running ones. True when none
        is left running."""
        if self._background is not None:
            self._background.shutdown(wait=False)
            self._background = None
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout=grace)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.scheduler", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--once", metavar="JOB", choices=[job.name for job in JOBS])
    parser.add_argument("--list", action="store_true", help="print the jobs and exit")
    args = parser.parse_args(argv)
    logs.configure("scheduler")
    # a skipped turn of a job still running is expected; each HTTP call of a job is noise
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings()
    if args.list:
        for job in JOBS:
            print(f"{job.name:20} every {job.interval(settings):>6g} s  {job.target}")
        return 0
    try:
        scheduler = Scheduler(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.once:
        try:
            outcome = scheduler.run_once(args.once)
        except psycopg.Error as exc:
            print(f"error: the database does not answer: {exc}", file=sys.stderr)
            return 1
        return {Outcome.ran: 0, Outcome.failed: 1, Outcome.missing: 1, Outcome.busy: 3}[outcome]

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    metrics.serve("scheduler", metrics.SettlementStates(lambda: settlement_states(settings)))
    scheduler.start()
    while not stop.wait(0.5):
        pass
    if not scheduler.stop():
        # a job still running holds its lock on its own connection, which dies with us:
        # leaving now is safe, and every job is idempotent on the next run
        log.warning("a job is still running after %.0f s: leaving it", STOP_GRACE_SECONDS)
        logging.shutdown()
        os._exit(0)
    return 0


def settlement_states(settings: Settings) -> list[tuple[str, int, int]]:
    """(state, epochs in it, newest epoch) of this chain's settlement (the settlement job
    runs here), for the metrics."""
    with psycopg.connect(libpq_url(settings.database_url), connect_timeout=2) as conn:
        rows = conn.execute(
            "SELECT state, count(*), max(epoch) FROM settlement_epochs WHERE chain_id = %s"
            " GROUP BY state ORDER BY state",
            (settings.chain_id,),
        ).fetchall()
    return [(str(state), int(count), int(newest)) for state, count, newest in rows]


if __name__ == "__main__":
    sys.exit(main())
