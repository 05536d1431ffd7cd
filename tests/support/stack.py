"""One running stack per test session, for end-to-end tests: anvil with the Buzzer deployment
(and its clock), a migrated PostgreSQL database, an embedded Redis with append-only
persistence (as `make run` runs it), the API served by uvicorn on a free port, and one
tracking writer (`python -m api.tracking.writer`, once that module exists).

    # `stack` is a session fixture of tests/conftest.py: every suite shares the one stack
    def test_serve_and_click(stack):
        httpx.get(f"{stack.api_url}/x402/ad", params=...)
        stack.chain.increase_time(3600)      # anvil's clock (`stack.anvil` for raw RPC)
        stack.index()                        # the indexer to the chain's head
        stack.restart_writer(signal.SIGKILL) # an outage

Everything runs in processes of its own, as in production, so tests see what a client sees.
The stack is shared: tests leave it usable (their own wallets, campaigns, slots) and never
revert its chain. It needs the session fixtures `deployment_record` and `pg_server`
(`tests.support.fixtures`)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from api.core.settings import Settings
from migrations import upgrade
from scripts._stack import api_args, redis_server_command
from tests.support import postgres
from tests.support.anvil import Anvil, DeploymentRecord, free_port, start_anvil
from tests.support.chain import ChainDriver

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
JWT_SECRET = "stack-session-secret-" + "s" * 32
# anvil's dev keys: #2 the oracle, #9 pays the gas of x402 settlements
ORACLE_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
FACILITATOR_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"


Popen = subprocess.Popen[bytes]


class StackError(RuntimeError):
    """A part of the stack did not start; the message has its log's tail."""


def writer_installed() -> bool:
    return importlib.util.find_spec("api.tracking.writer") is not None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Stack:
    anvil: Anvil
    chain: ChainDriver
    deployment: dict[str, Any]
    deployments_dir: Path
    database_url: str
    redis_url: str
    api_url: str
    settings: Settings
    directory: Path
    env: dict[str, str] = field(repr=False)
    api: subprocess.Popen[bytes] | None = None
    writer: subprocess.Popen[bytes] | None = None
    redis_server: subprocess.Popen[bytes] | None = None

    @property
    def api_port(self) -> int:
        return int(self.api_url.rsplit(":", 1)[1])

    def cache(self) -> redis.Redis:
        """A client of the stack's Redis (close it after use)."""
        return redis.Redis.from_url(self.redis_url)

    # --- processes -------------------------------------------------------------------------

    def _python(self, name: str, *args: str, env: dict[str, str] | None = None) -> Popen:
        with (self.directory / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=PROJECT_ROOT,
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _serve(self, name: str, port: int, env: dict[str, str]) -> Popen:
        """uvicorn as `make run` starts it, answering /healthz."""
        process = self._python(name, *api_args(port), env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise StackError(f"the API exited ({process.returncode}):\n{self.log(name)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    return process
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                _stop(process)
                raise StackError(f"the API did not answer in {START_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def start_api(self) -> None:
        self.api = self._serve("api", self.api_port, self.env)

    @contextmanager
    def another_api(self, **env: str) -> Iterator[str]:
        """A second API process on the same services with some settings changed (e.g.
        `BUZZER_RATE_LIMIT_AUTH_PER_MINUTE="2"`), for a test that must not disturb the
        shared one; yields its URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = self._serve(
            "another-api", port, {**self.env, "BUZZER_PUBLIC_BASE_URL": url, **env}
        )
        try:
            yield url
        finally:
            _stop(process)

    def stop_api(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.api, sig)
        self.api = None

    def restart_api(self, sig: int = signal.SIGTERM) -> None:
        """Stop the API with `sig` and start it again (same port, same settings)."""
        self.stop_api(sig)
        self.start_api()

    def start_writer(self) -> None:
        if writer_installed():
            self.writer = self._python("writer", "api.tracking.writer", "--consumer", "stack-1")

    def stop_writer(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.writer, sig)
        self.writer = None

    def restart_writer(self, sig: int = signal.SIGTERM) -> None:
        """Stop the writer with `sig` (SIGKILL for a crash) and start it again."""
        self.stop_writer(sig)
        self.start_writer()

    def start_redis(self) -> None:
        socket_file = self.directory / "redis.sock"
        socket_file.unlink(missing_ok=True)
        data = self.directory / "redis"
        data.mkdir(exist_ok=True)
        with (self.directory / "redis.log").open("ab") as log:
            self.redis_server = subprocess.Popen(
                redis_server_command(data, socket_file), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with redis.Redis(unix_socket_path=str(socket_file)) as probe:
                    if probe.ping():
                        return
            except (redis.RedisError, OSError):
                pass
            if self.redis_server.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"Redis did not start:\n{self.log('redis')}")
            time.sleep(0.02)

    def restart_redis(self, sig: int = signal.SIGTERM) -> None:
        """Stop Redis with `sig` (SIGTERM: a clean shutdown, SIGKILL: a crash) and start it
        again on its append-only file."""
        _stop(self.redis_server, sig)
        self.start_redis()

    def index(self, timeout: float = 120.0) -> None:
        """Run the indexer (the real CLI) up to the chain's head; the API's ad servers hear
        of the changes through Redis."""
        result = subprocess.run(
            [sys.executable, "-m", "indexer", "run", "--exit-at-head"],
            cwd=PROJECT_ROOT,
            env={**self.env, "INDEXER_CONFIRMATIONS": "0"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"the indexer failed ({result.returncode}):\n{result.stderr[-3000:]}")

    def index_here(self) -> None:
        """`index` without a process of its own: the same indexer, run in this process to the
        head (a second faster where a test indexes after every few blocks)."""
        from indexer.runner import Indexer
        from indexer.settings import Settings as IndexerSettings

        environ = {**self.env, "INDEXER_CONFIRMATIONS": "0"}
        previous = os.environ.get("BUZZER_DEPLOYMENTS_DIR")
        os.environ["BUZZER_DEPLOYMENTS_DIR"] = environ["BUZZER_DEPLOYMENTS_DIR"]
        try:
            indexer = Indexer(IndexerSettings.from_env(environ))
            try:
                indexer.run(until_head=True)
            finally:
                indexer.close()
        finally:
            if previous is None:
                os.environ.pop("BUZZER_DEPLOYMENTS_DIR", None)
            else:
                os.environ["BUZZER_DEPLOYMENTS_DIR"] = previous

    def log(self, name: str, lines: int = 30) -> str:
        """The tail of a process's log: `api`, `writer` or `redis`."""
        return _tail(self.directory / f"{name}.log", lines)

    def stop(self) -> None:
        self.stop_api()
        self.stop_writer()
        _stop(self.redis_server)
        self.redis_server = None


def start_stack(
    exits: ExitStack, deployment_record: DeploymentRecord, pg_server: str, directory: Path
) -> Stack:
    """Start every part of the stack; `exits` stops them and drops the database."""
    node = exits.enter_context(start_anvil(log_path=directory / "anvil.log"))
    deployments_dir = directory / "deployments"
    deployment = deployment_record.replay(node.url, deployments_dir)
    database_url = exits.enter_context(postgres.fresh_database(pg_server, "buzzer_stack"))
    upgrade(database_url)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    redis_url = f"unix://{directory / 'redis.sock'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "RPC_URL": node.url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CHAIN_ID": str(node.chain_id),
        "BUZZER_DEPLOYMENTS_DIR": str(deployments_dir),
        "BUZZER_PUBLIC_BASE_URL": api_url,
        "BUZZER_JWT_SECRET": JWT_SECRET,
        "BUZZER_SIWE_DOMAIN": f"127.0.0.1:{port}",
        "BUZZER_SIWE_URI": api_url,
        "BUZZER_STORAGE_DIR": str(directory / "creatives"),
        "BUZZER_SETTLEMENT_ARTEFACT_DIR": str(directory / "artefacts"),
        "BUZZER_ORACLE_PRIVATE_KEY": ORACLE_KEY,
        "BUZZER_FACILITATOR_PRIVATE_KEY": FACILITATOR_KEY,
        # every test's client is 127.0.0.1: limits are for `another_api` to set
        "BUZZER_RATE_LIMIT_IP_PER_MINUTE": "1000000",
        "BUZZER_RATE_LIMIT_WALLET_PER_MINUTE": "1000000",
        "BUZZER_RATE_LIMIT_AUTH_PER_MINUTE": "1000000",
        "BUZZER_RATE_LIMIT_AD_PER_MINUTE": "0",
        # nor does the writer's per-IP rule hold them: each test's visitors are 127.0.0.1
        "BUZZER_TRACKING_RATE_IP_PER_MINUTE": "0",
        # as `make run`: the tests' sites (on made-up domains) serve ads once added
        "BUZZER_DEV_TRUST_SITES": "1",
    }
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        rpc_url=node.url,
        chain_id=node.chain_id,
        jwt_secret=JWT_SECRET,
        siwe_domain=env["BUZZER_SIWE_DOMAIN"],
        siwe_uri=api_url,
        public_base_url=api_url,
        storage_dir=env["BUZZER_STORAGE_DIR"],
        settlement_artefact_dir=env["BUZZER_SETTLEMENT_ARTEFACT_DIR"],
        oracle_private_key=ORACLE_KEY,
        facilitator_private_key=FACILITATOR_KEY,
        rate_limit_ip_per_minute=1_000_000,
        rate_limit_wallet_per_minute=1_000_000,
        rate_limit_auth_per_minute=1_000_000,
        rate_limit_ad_per_minute=0,
        tracking_rate_ip_per_minute=0,
        dev_trust_sites=True,
    )
    stack = Stack(
        anvil=node,
        chain=ChainDriver(node.url, deployment),
        deployment=deployment,
        deployments_dir=deployments_dir,
        database_url=database_url,
        redis_url=redis_url,
        api_url=api_url,
        settings=settings,
        directory=directory,
        env=env,
    )
    exits.callback(stack.stop)
    stack.start_redis()
    stack.start_api()
    stack.start_writer()
    return stack


@contextmanager
def own_stack(
    deployment_record: DeploymentRecord, pg_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A whole stack, stopped when the block ends."""
    # a short directory: the Redis socket's path must stay under the kernel's ~100 bytes
    directory = Path(tmp_path_factory.mktemp("stack"))
    with ExitStack() as exits:
        yield start_stack(exits, deployment_record, pg_server, directory)
    shutil.rmtree(directory / "redis", ignore_errors=True)


@pytest.fixture(scope="session")
def stack(
    deployment_record: DeploymentRecord, pg_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with own_stack(deployment_record, pg_server, tmp_path_factory) as started:
        yield started
