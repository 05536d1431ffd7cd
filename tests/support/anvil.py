"""anvil for tests: start one on a free port, talk JSON-RPC to it, deploy Buzzer to it.

    with start_anvil() as node:
        deployment = deploy(node.url, tmp_path / "deployments")
        snap = node.snapshot(); ...; node.revert(snap)

The native anvil binary from node_modules is used (not the node wrapper), in its own process
group, so stopping it kills everything it started. It runs with `--order fifo`, so
transactions sent one after another while automine is off are mined in that order (the
activity generator relies on it), and with 30 funded dev accounts (0 admin, 1 settler,
2 oracle, 3 guardian, 4 treasury, 5.. users).

A snapshot taken before `anvil_reorg` cannot be reverted to afterwards: reorg tests need an
anvil of their own (`fresh_anvil`), which `DeploymentRecord.replay` deploys in well under a
second by replaying the session deployment's raw transactions.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = PROJECT_ROOT / "node_modules"
CHAIN_ID = 1337  # ape's node provider refuses anvil's default 31337 for signing
DEV_ACCOUNTS = 30
GAS_LIMIT = 100_000_000  # Base's blocks are larger still; big blocks keep bulk generation fast
START_TIMEOUT = 15.0
DEPLOY_TIMEOUT = 300.0
# short delays so tests can reach withdrawals and claimable roots with one time jump
# the contracts' floors, so tests move the clock as little as possible
EPOCH_LENGTH = 3_600
SETTLEMENT_GRACE = 3_600
WITHDRAW_DELAY = EPOCH_LENGTH + SETTLEMENT_GRACE
CHALLENGE_PERIOD = 3_600


class AnvilError(RuntimeError):
    """anvil could not be started, answered with an error, or a deploy failed."""


class RpcError(AnvilError):
    """A JSON-RPC error reply."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message')} (code {error.get('code')})")
        self.method = method
        self.error = error


def anvil_binary() -> Path:
    """`$ANVIL_BIN`, else the native binary in node_modules/@foundry-rs/anvil-<platform>/bin,
    else the node wrapper node_modules/.bin/anvil."""
    override = os.environ.get("ANVIL_BIN")
    if override:
        return Path(override)
    for candidate in sorted(
        glob.glob(str(NODE_MODULES / "@foundry-rs" / "anvil-*" / "bin" / "anvil"))
    ):
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    wrapper = NODE_MODULES / ".bin" / "anvil"
    if wrapper.exists():
        return wrapper
    raise AnvilError(f"no anvil under {NODE_MODULES}: run `npm install` (or `make install`)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


class Rpc:
    """A minimal JSON-RPC client over one kept-alive HTTP connection per thread (much faster
    than web3 for the many small calls the activity generator makes)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.url = url
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._timeout = timeout
        self._local = threading.local()
        self._ids = iter(range(1, 2**62))

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload)
        headers = {"Content-Type": "application/json"}
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise AnvilError(f"HTTP {response.status} from {self.url}: {data[:200]!r}")
            return json.loads(data)
        raise AssertionError("unreachable")

    def call(self, method: str, *params: Any) -> Any:
        reply = self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        if "error" in reply:
            raise RpcError(method, reply["error"])
        return reply.get("result")

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], chunk: int = 500) -> list[Any]:
        """Several calls in JSON-RPC batches; results in call order. anvil runs the calls of
        one batch concurrently: use it for reads only, never for transactions whose order
        matters."""
        results: list[Any] = []
        for start in range(0, len(calls), chunk):
            part = calls[start : start + chunk]
            payload = [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in enumerate(part)
            ]
            replies = sorted(self._post(payload), key=lambda r: r["id"])
            for (method, _), reply in zip(part, replies, strict=True):
                if "error" in reply:
                    raise RpcError(method, reply["error"])
                results.append(reply.get("result"))
        return results

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


@dataclass
class Anvil:
    """A running anvil."""

    url: str
    port: int
    chain_id: int
    process: subprocess.Popen[bytes]
    log_path: Path
    rpc: Rpc = field(init=False)

    def __post_init__(self) -> None:
        self.rpc = Rpc(self.url)

    def call(self, method: str, *params: Any) -> Any:
        return self.rpc.call(method, *params)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def snapshot(self) -> str:
        snapshot_id: str = self.call("evm_snapshot")
        return snapshot_id

    def revert(self, snapshot_id: str) -> None:
        if not self.call("evm_revert", snapshot_id):
            raise AnvilError(
                f"evm_revert({snapshot_id}) failed: the snapshot is gone (used already, or "
                "taken before an anvil_reorg, which invalidates it)"
            )

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    else:  # the leader is gone; make sure nothing of its group is left
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def start_anvil(
    *,
    chain_id: int = CHAIN_ID,
    accounts: int = DEV_ACCOUNTS,
    gas_limit: int = GAS_LIMIT,
    extra_args: Sequence[str] = (),
    log_path: Path | None = None,
    silent: bool = True,
) -> Iterator[Anvil]:
    """Run anvil on a free 127.0.0.1 port until the block ends, then kill its process group.

    `silent` keeps anvil from logging every transaction (it slows big runs down); set it
    False to debug; the log goes to `log_path` (by default a temporary file, deleted after)."""
    binary = anvil_binary()
    if log_path is None:
        with (
            tempfile.TemporaryDirectory(prefix="anvil-") as scratch,
            start_anvil(
                chain_id=chain_id,
                accounts=accounts,
                gas_limit=gas_limit,
                extra_args=extra_args,
                log_path=Path(scratch) / "anvil.log",
                silent=silent,
            ) as node,
        ):
            yield node
        return
    last_error = ""
    for _ in range(5):  # a free port can be taken between probing and binding
        port = free_port()
        command = [
            str(binary),
            "--chain-id", str(chain_id),
            "--port", str(port),
            "--host", "127.0.0.1",
            "--accounts", str(accounts),
            "--order", "fifo",
            # `finalized` trails the head by two blocks, not 64
            "--slots-in-an-epoch", "1",
            "--gas-limit", str(gas_limit),
            *(["--silent"] if silent else []),
            *extra_args,
        ]  # fmt: skip
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = Anvil(f"http://127.0.0.1:{port}", port, chain_id, process, log_path)
        try:
            _wait_until_ready(node)
        except AnvilError as exc:
            _stop(process)
            last_error = str(exc)
            if "exited" in last_error:
                continue
            raise
        try:
            yield node
        finally:
            node.rpc.close()
            _stop(process)
        return
    raise AnvilError(f"anvil did not start: {last_error}\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until_ready(node: Anvil, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if node.process.poll() is not None:
            raise AnvilError(f"anvil exited with code {node.process.returncode} while starting")
        try:
            chain_id = int(node.call("eth_chainId"), 16)
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise AnvilError(f"{node.url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.02)
            continue
        if chain_id != node.chain_id:
            raise AnvilError(f"{node.url} answers chain id {chain_id}, not {node.chain_id}")
        return


def ape_executable() -> str:
    beside = Path(sys.executable).with_name("ape")
    if beside.exists():
        return str(beside)
    raise AnvilError(f"no `ape` beside {sys.executable}: run `make install`")


def deploy(
    rpc_url: str,
    deployments_dir: Path,
    *,
    epoch_length: int = EPOCH_LENGTH,
    settlement_grace: int = SETTLEMENT_GRACE,
    withdraw_delay: int = WITHDRAW_DELAY,
    challenge_period: int = CHALLENGE_PERIOD,
    extra_args: Sequence[str] = (),
    ape_data_folder: Path | None = None,
    timeout: float = DEPLOY_TIMEOUT,
) -> dict[str, Any]:
    """`ape run deploy` against `rpc_url` (a subprocess, as a user would run it); return the
    parsed `deployments_dir/<chain_id>.json` it writes.

    ape gets a private data folder: it caches contract types per address for custom
    networks, and every fresh anvil reuses the same addresses."""
    deployments_dir = Path(deployments_dir)
    deployments_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ape-data-") as scratch:
        return _deploy(
            rpc_url,
            deployments_dir,
            ape_data_folder or Path(scratch),
            [
                "--epoch-length", str(epoch_length),
                "--settlement-grace", str(settlement_grace),
                "--withdraw-delay", str(withdraw_delay),
                "--challenge-period", str(challenge_period),
                *extra_args,
            ],
            timeout,
        )  # fmt: skip


def _deploy(
    rpc_url: str, deployments_dir: Path, ape_data: Path, args: list[str], timeout: float
) -> dict[str, Any]:
    bin_dirs = os.pathsep.join([str(Path(sys.executable).parent), str(NODE_MODULES / ".bin")])
    env = {
        **os.environ,
        "PATH": f"{bin_dirs}{os.pathsep}{os.environ.get('PATH', '')}",
        "BUZZER_DEPLOYMENTS_DIR": str(deployments_dir),
        "APE_DATA_FOLDER": str(ape_data),
    }
    command = [ape_executable(), "run", "deploy", "--network", rpc_url, *args]
    result = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AnvilError(
            f"`{' '.join(command[1:])}` failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    chain_id = int(Rpc(rpc_url).call("eth_chainId"), 16)
    deployment: dict[str, Any] = json.loads((deployments_dir / f"{chain_id}.json").read_text())
    return deployment


@dataclass(frozen=True)
class DeploymentRecord:
    """The raw transactions of a deployment made on a fresh chain (blocks 1..last_block), to
    replay it on another fresh anvil: same keys and nonces give the same addresses."""

    deployment: dict[str, Any]
    raw_transactions: tuple[tuple[int, str], ...]  # (block number, raw signed tx)
    last_block: int

    @classmethod
    def capture(cls, rpc_url: str, deployment: dict[str, Any], last_block: int) -> DeploymentRecord:
        rpc = Rpc(rpc_url)
        blocks = rpc.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in range(1, last_block + 1)]
        )
        hashes = [(int(b["number"], 16), h) for b in blocks for h in b["transactions"]]
        raws = rpc.batch([("eth_getRawTransactionByHash", [h]) for _, h in hashes])
        return cls(
            deployment,
            tuple((n, raw) for (n, _), raw in zip(hashes, raws, strict=True)),
            last_block,
        )

    def replay(self, rpc_url: str, deployments_dir: Path | None = None) -> dict[str, Any]:
        """Send the recorded transactions to the fresh chain at `rpc_url`, block by block;
        check every contract has code; write the deployments file if a directory is given."""
        rpc = Rpc(rpc_url)
        if int(rpc.call("eth_blockNumber"), 16) != 0:
            raise AnvilError(f"{rpc_url} is not a fresh chain: cannot replay a deployment")
        automine = rpc.call("anvil_getAutomine")
        rpc.call("evm_setAutomine", False)
        try:
            for block in range(1, self.last_block + 1):
                for number, raw in self.raw_transactions:
                    if number == block:
                        rpc.call("eth_sendRawTransaction", raw)
                rpc.call("evm_mine")
        finally:
            rpc.call("evm_setAutomine", bool(automine))
        receipts = rpc.batch(
            [("eth_getBlockReceipts", [hex(n)]) for n in range(1, self.last_block + 1)]
        )
        failed = [r["transactionHash"] for block in receipts for r in block if r["status"] != "0x1"]
        if failed:
            raise AnvilError(f"replayed deployment transactions reverted: {failed}")
        codes = rpc.batch(
            [
                ("eth_getCode", [address, "latest"])
                for address in self.deployment["contracts"].values()
            ]
        )
        missing = [
            name
            for name, code in zip(self.deployment["contracts"], codes, strict=True)
            if code in ("0x", None)
        ]
        if missing:
            raise AnvilError(f"replayed deployment has no code for {missing}")
        if deployments_dir is not None:
            deployments_dir = Path(deployments_dir)
            deployments_dir.mkdir(parents=True, exist_ok=True)
            path = deployments_dir / f"{self.deployment['chain_id']}.json"
            path.write_text(json.dumps(self.deployment, indent=2) + "\n")
        return dict(self.deployment)
