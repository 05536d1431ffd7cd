"""The API's server: uvicorn workers that each listen on a socket of their own, bound to the
same address with SO_REUSEPORT, so the kernel spreads new connections evenly across them.

    python -m api.core.serve --port 8000 --workers 2 [--host 127.0.0.1] [--log-level warning]

uvicorn's own `--workers` shares one listening socket: every worker wakes for a new
connection and the first to run accepts all that are waiting, so a burst of keep-alive
connections lands unevenly (in `bench/ad_serving.py`, 10 connections split 10/0 and 50 split
as badly as 49/1 or 48/2) and the busier worker's queue sets the p99. With SO_REUSEPORT the
kernel hashes each connection to one of the sockets instead (50 split 16/34 at worst, most
often within 22/28).
The price: connections still waiting in a worker's own queue when it dies are reset rather
than taken by another worker (unless `net.ipv4.tcp_migrate_req` is 1).

The parent supervises as uvicorn's does, with its worker processes
(`uvicorn.supervisors.multiprocess.Process`): SIGTERM or SIGINT stops every worker gracefully,
a worker that dies after it started serving is replaced, and one that fails before it serves
(the app, its settings, the address) stops them all with exit code 3. Each worker runs the app
of `api.main:app_from_env` with the HTTP protocol of `api.core.protocol`, and leaves the
client's address to the API (`api.core.clientip`): no proxy headers."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Process

from observe import logs

logger = logging.getLogger("api.core.serve")  # by name: `python -m` runs it as __main__

APP = "api.main:app_from_env"
HTTP = "api.core.protocol:HttpProtocol"
POLL_SECONDS = 0.5


def config(host: str, port: int, workers: int, log_level: str, access_log: bool) -> Config:
    """How each worker serves the API: the app from the environment, our HTTP protocol, and
    the peer's address as it is (`api.core.clientip` decides which proxies to believe). No
    log config of uvicorn's: the app routes every logger, uvicorn's included, through
    `observe.logs`."""
    return Config(
        APP, factory=True, http=HTTP, host=host, port=port, workers=workers,
        proxy_headers=False, log_config=None, log_level=log_level, access_log=access_log,
    )  # fmt: skip


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port that other sockets with SO_REUSEPORT may share."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def claim_port(host: str, port: int) -> int:
    """The port, checked free by binding it without SO_REUSEPORT (0: a free one the kernel
    picks). Without the check a second server on the same port would silently take half of
    this one's connections."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        bound: int = probe.getsockname()[1]
        return bound


class Workers:
    """`count` worker processes, each with its own listening socket, kept running until a
    signal stops them."""

    def __init__(self, config: Config, count: int) -> None:
        self.config = config
        self.count = count
        self.processes: list[Process] = []
        self.serving: set[int] = set()  # pids of the workers seen serving
        self.stop_signal: int | None = None
        self.exit_code = 0

    def spawn(self) -> Process:
        """A worker started on a socket of its own. The socket is closed here once the
        worker has it: a copy kept open here would stay in the kernel's group after the
        worker dies and take its share of connections with nobody to accept them."""
        sock = reuse_port_socket(self.config.host, self.config.port)
        try:
            process = Process(self.config, [sock])
            process.start()
        finally:
            sock.close()
        return process

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self.processes = [self.spawn() for _ in range(self.count)]
        logger.info(
            "serving on %s:%d with %d workers (pids %s)",
            self.config.host, self.config.port, self.count,
            ", ".join(str(p.pid) for p in self.processes),
        )  # fmt: skip
        while self.stop_signal is None and not self.exit_code:
            time.sleep(POLL_SECONDS)
            self.keep_alive()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join()
        return self.exit_code

    def keep_alive(self) -> None:
        """Replace each worker that died or hangs; stop them all when one never served."""
        timeout = self.config.timeout_worker_healthcheck
        for index, process in enumerate(self.processes):
            if self.stop_signal is not None:
                return
            if process.is_alive(timeout):
                if process.pid not in self.serving and process.is_ready(timeout):
                    assert process.pid is not None
                    self.serving.add(process.pid)
                    logger.info("worker %d is serving", process.pid)
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE or process.pid not in self.serving:
                logger.error(
                    "worker %s failed before it served (exit code %s): stopping",
                    process.pid, process.exitcode,
                )  # fmt: skip
                self.exit_code = STARTUP_FAILURE
                return
            logger.warning("worker %s died (exit code %s): replacing it", process.pid,
                           process.exitcode)  # fmt: skip
            self.serving.discard(process.pid)
            self.processes[index] = self.spawn()

    def _stop(self, sig: int, _frame: FrameType | None) -> None:
        self.stop_signal = sig


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.core.serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logs.configure("api")
    try:
        port = claim_port(args.host, args.port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return STARTUP_FAILURE
    settings = config(args.host, port, args.workers, args.log_level, args.access_log)
    if args.workers == 1:
        server = Server(settings)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    return Workers(settings, args.workers).run()


if __name__ == "__main__":
    sys.exit(main())
