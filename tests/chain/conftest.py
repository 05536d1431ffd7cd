"""Fixtures for the chain layer's tests: an anvil of this module's own with the Buzzer
deployment replayed onto it (tests stop mining and move nonces, which would disturb a shared
chain), reset after each test."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.rpc import Rpc
from chain.sender import Sender
from tests.support.anvil import DeploymentRecord, start_anvil
from tests.support.chain import ChainDriver, dev_account
from tests.support.fixtures import (
    FreshAnvil,
)


@pytest.fixture(scope="module")
def own_anvil(
    deployment_record: DeploymentRecord,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FreshAnvil]:
    directory: Path = tmp_path_factory.mktemp("chain")
    with start_anvil(log_path=directory / "anvil.log") as node:
        deployment = deployment_record.replay(node.url, directory)
        yield FreshAnvil(node, deployment, directory, ChainDriver(node.url, deployment))


@pytest.fixture
def local(own_anvil: FreshAnvil) -> Iterator[FreshAnvil]:
    """The module's anvil, back in its freshly deployed state (mining on) after the test."""
    snapshot = own_anvil.node.snapshot()
    yield own_anvil
    own_anvil.node.call("evm_setAutomine", True)
    own_anvil.node.call("anvil_dropAllTransactions")
    own_anvil.node.revert(snapshot)


@pytest.fixture
def rpc(local: FreshAnvil) -> Iterator[Rpc]:
    client = Rpc(local.url, retries=2, backoff=0.05)
    yield client
    client.close()


@pytest.fixture
def make_sender(rpc: Rpc, local: FreshAnvil) -> Callable[..., Sender]:
    """`make_sender(index, **options)`: a Sender for dev account `index`, polling quickly."""

    def make(index: int, **options: Any) -> Sender:
        key = "0x" + bytes(dev_account(index).key).hex()
        return Sender(rpc, key, local.node.chain_id, **{"poll_interval": 0.05, **options})

    return make
