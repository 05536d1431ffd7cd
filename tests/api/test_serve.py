"""The API's server (`python -m api.core.serve`) on the session stack: two workers, each on a
socket of its own, both answer new connections; a worker killed is replaced and no connection
is left hanging (one queued on its socket is reset); SIGTERM stops them all; a worker that
cannot start the app, or a port already taken, stops the server with exit code 3 instead of
restarting forever."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from scripts._stack import api_args
from tests.support.anvil import free_port
from tests.support.stack import PROJECT_ROOT, Stack

START_TIMEOUT = 60.0


def _launch(port: int, env: dict[str, str], log: Path, workers: int = 2) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *api_args(port, workers)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _workers(server: subprocess.Popen[bytes], port: int) -> set[int]:
    """The server's children listening on its port (not multiprocessing's helpers)."""
    pids = set()
    for child in psutil.Process(server.pid).children():
        try:
            listening = [
                c for c in child.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port
            ]  # fmt: skip
        except psutil.NoSuchProcess:
            continue
        if listening:
            pids.add(child.pid)
    return pids


def _answered_by(server: subprocess.Popen[bytes], port: int) -> int:
    """The pid of the worker that answers `GET /healthz` on a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 200 ")
        peer = client.getsockname()[1]
        for pid in _workers(server, port):
            for connection in psutil.Process(pid).net_connections("tcp"):
                if connection.raddr and connection.raddr.port == peer:
                    return pid
    raise AssertionError(f"no worker holds the connection from port {peer}")


def _wait_serving(server: subprocess.Popen[bytes], port: int, count: int, log: Path) -> set[int]:
    """The pids of `count` workers once the server has seen each of them serving."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        text = log.read_text(errors="replace")
        assert server.poll() is None, text[-3000:]
        workers = _workers(server, port)
        if len(workers) == count and all(f"worker {pid} is serving" in text for pid in workers):
            return workers
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.1)


@contextmanager
def _server(stack: Stack, log: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _launch(port, {**stack.env, "BUZZER_PUBLIC_BASE_URL": url, **env}, log)
    try:
        yield server, port
    finally:
        if server.poll() is None:  # (its workers too: killed alone, it would leave them running)
            with suppress(psutil.NoSuchProcess):
                for child in psutil.Process(server.pid).children(recursive=True):
                    with suppress(psutil.NoSuchProcess):
                        child.kill()
            server.kill()
            server.wait()


def test_both_workers_answer_and_sigterm_stops_them(stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with _server(stack, log) as (server, port):
        workers = _wait_serving(server, port, 2, log)
        assert {_answered_by(server, port) for _ in range(40)} == workers

        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
        assert not any(psutil.pid_exists(pid) for pid in workers)


def test_a_killed_worker_is_replaced_and_no_connection_hangs(stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with _server(stack, log) as (server, port):
        workers = _wait_serving(server, port, 2, log)
        killed = psutil.Process(min(workers))
        killed.kill()
        # dead (its socket closed only when it is a zombie, a little after its files are gone)
        with suppress(psutil.NoSuchProcess):
            while killed.status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.01)
        # new connections go to the live socket; one the kernel had queued on the dead socket
        # is reset (a client retries it), never left hanging (`_answered_by` times out)
        answered = set()
        for _ in range(20):
            with suppress(ConnectionResetError):
                answered.add(_answered_by(server, port))
        assert answered and killed.pid not in answered

        replaced = _wait_serving(server, port, 2, log)
        assert killed.pid not in replaced and workers - {killed.pid} < replaced
        assert {_answered_by(server, port) for _ in range(40)} == replaced
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0


def test_a_worker_that_cannot_start_the_app_stops_the_server(stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with _server(stack, log, CHAIN_ID="not-a-chain") as (server, _):
        assert server.wait(START_TIMEOUT) == 3
    assert "failed before it served" in log.read_text()


def test_a_taken_port_stops_the_server(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _launch(port, dict(os.environ), log)
        assert server.wait(30) == 3
    assert "cannot listen on 127.0.0.1" in log.read_text()
