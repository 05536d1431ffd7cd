"""Every Redis script of serving, tracking and the writer runs on Redis Cluster: the same
tests again, against a redis-server in cluster mode that owns every slot. Such a server
refuses a script whose keys hash to different slots ("CROSSSLOT"), exactly as a cluster
of many nodes would, so a key outside its campaign's hash tag fails here."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.tracking import test_budget, test_intake, test_writer
from tests.tracking.test_budget import network  # noqa: F401 (fixture used by name)
from tests.tracking.writer_fixtures import (  # noqa: F401 (fixtures used by name)
    OwnRedis,
    db,
    tracking_database,
)

# the tests run again here, each under its own name with this module's fixtures
RERUN = {
    test_budget: (
        "test_a_verified_impression_moves_its_reservation_to_billed_once",
        "test_an_unused_reservation_is_released_when_its_token_expires",
        "test_free_budget_never_goes_negative_under_concurrent_serving_and_tracking",
    ),
    test_intake: (
        "test_a_click_faster_than_a_person_is_too_fast",
        "test_a_cpc_click_bills_its_bid_once",
        "test_a_rendered_ad_is_recorded_verified_and_bills_its_reservation",
        "test_a_reused_impression_token_is_a_duplicate_and_bills_once",
        "test_concurrent_beacons_share_round_trips_and_each_is_recorded_once",
    ),
    test_writer: (
        "test_every_event_is_stored_once_with_its_verdict",
        "test_rate_per_ip_prefix_holds_across_writers_and_batches",
        "test_same_token_through_two_writers_is_one_verified_one_duplicate",
    ),
}


def _free_port() -> int:
    """A port whose cluster bus port (+10,000) is free too."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class ClusterRedis(OwnRedis):
    """One cluster-mode node owning all 16,384 slots, with AOF, on a Unix socket."""

    def start(self) -> ClusterRedis:
        self.socket.unlink(missing_ok=True)
        (self.directory / "nodes.conf").unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [self.executable, "--port", str(_free_port()), "--bind", "127.0.0.1",
             "--unixsocket", str(self.socket), "--dir", str(self.directory), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                client = self.client()
                client.execute_command("CLUSTER", "ADDSLOTS", *range(16_384))
                break
            except redis.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start ({self.process.poll()})")
            time.sleep(0.02)
        while "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster node did not take its slots")
            time.sleep(0.05)
        return self


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRedis]:
    server = ClusterRedis(Path(tmp_path_factory.mktemp("cluster"))).start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(cluster: ClusterRedis) -> str:
    """The API, the intake and the release job of these tests talk to the cluster node."""
    return cluster.url


@pytest.fixture
def own_redis(cluster: ClusterRedis) -> ClusterRedis:
    """The writer tests' Redis, emptied."""
    cluster.client().flushall()
    return cluster


def test_the_node_refuses_a_script_across_slots(cluster: ClusterRedis) -> None:
    """The check these reruns rely on: keys of two hash tags in one script are refused."""
    client = cluster.client()
    with pytest.raises(redis.ResponseError, match="same slot"):
        client.eval("return 1", 2, "buzzer:{b1}:x", "buzzer:{b2}:x")
    assert client.eval("return 1", 2, "buzzer:{b1}:x", "buzzer:{b1}:y") == 1


for _module, _names in RERUN.items():
    for _name in _names:
        globals()[_name + "_on_cluster"] = getattr(_module, _name)
