"""`make run` as a newcomer uses it: the data survives a restart (the demo publisher's page
still fills the same slot, nothing redeployed, the demo not loaded twice), a SIGINT sent to
make's own PID stops the whole stack in seconds, and a taken port is named by its variable
before anything starts."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from web3 import Web3

from chain.contracts import load_deployment
from scripts._stack import free_port, port_is_free
from tests.scripts.test_scripts_anvil import (
    CHAIN_ID,
    PROJECT_ROOT,
    _read_lines,
    _wait_for,
    base_env,
)

pytestmark = pytest.mark.anvil


def _env(tmp_path: Path, anvil_port: int, api_port: int) -> dict[str, str]:
    env = {
        **base_env(tmp_path / "deployments", tmp_path / "ape"),
        "ANVIL_PORT": str(anvil_port),
        "API_PORT": str(api_port),
        "BUZZER_RUN_DIR": str(tmp_path / "run"),
    }
    for name in ("RPC_URL", "DATABASE_URL", "REDIS_URL", "BUZZER_PUBLIC_BASE_URL"):
        env.pop(name, None)
    return env


def _start(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output = "".join(_wait_for(_read_lines(process), "Ctrl-C to stop", timeout=120))
    except BaseException:
        process.kill()
        raise
    return process, output


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> float:
    started = time.monotonic()
    process.send_signal(sig)
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return time.monotonic() - started


def test_restart_keeps_the_data_and_a_sigint_to_make_stops_it(tmp_path: Path) -> None:
    anvil_port, api_port = free_port(), free_port()
    env = _env(tmp_path, anvil_port, api_port)
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t{sys.executable} scripts/_stack.py\n")
    make, first = _start(["make", "--no-print-directory", "-f", str(makefile), "run"], env)
    slot = re.search(r"/demo\?slot=(slot_[0-9a-f]+)", first)
    assert slot is not None, first
    assert "deploying" in first
    deployment = load_deployment(CHAIN_ID, tmp_path / "deployments")
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{anvil_port}"))
    for name, address in deployment.contracts.items():  # deployed, and shown
        assert w3.eth.get_code(Web3.to_checksum_address(address)), name
        assert address in first
    page = f"http://127.0.0.1:{api_port}/demo?slot={slot.group(1)}"
    with urllib.request.urlopen(page, timeout=10) as reply:
        assert reply.status == 200
    # SIGINT to make alone (not its process group): the stack below it stops, promptly
    took = _stop(make)
    assert took < 20, f"stopping took {took:.1f} s"
    assert port_is_free(anvil_port) and port_is_free(api_port)
    assert (tmp_path / "run" / "chain" / "anvil-state.json").exists()

    again, second = _start([sys.executable, "scripts/_stack.py"], env)
    try:
        assert "resuming the saved chain" in second
        assert "already has a live deployment: not deploying" in second
        assert f"/demo?slot={slot.group(1)}" in second  # the same demo, not a second one
        with urllib.request.urlopen(page, timeout=10) as reply:
            assert reply.status == 200
    finally:
        took = _stop(again)
    assert took < 20, f"stopping took {took:.1f} s"


def test_a_taken_api_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    anvil_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api_port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "scripts/_stack.py"],
            cwd=PROJECT_ROOT,
            env=_env(tmp_path, anvil_port, api_port),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {api_port} (API_PORT) is taken" in result.stderr
    assert "set API_PORT to another port" in result.stderr
    assert "Traceback" not in result.stderr
    assert port_is_free(anvil_port)  # anvil was never started
    assert not (tmp_path / "run" / "chain").exists()
