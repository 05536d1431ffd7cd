"""uvicorn's protocol with a response's head written together with its body
(`api.core.protocol`): one write per response, the same bytes as uvicorn's own, and a response
without a body write (HEAD) or a stream that starts later still gets its head."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

PIPELINED = (
    b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n"
    b"HEAD /json HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
    b"GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
)


async def json_body(request: Request) -> Response:
    return JSONResponse({"ad_id": "L.0", "width": 300})


async def empty(request: Request) -> Response:
    return Response(status_code=204)


async def stream(request: Request) -> Response:
    async def chunks() -> Any:
        await asyncio.sleep(0.05)  # the head is out before the first chunk exists
        yield b"one"
        yield b"two"

    return StreamingResponse(chunks(), media_type="text/plain")


APP = Starlette(
    routes=[
        Route("/json", json_body, methods=["GET", "HEAD"]),
        Route("/empty", empty),
        Route("/stream", stream),
    ]
)


class Served:
    """The test app under uvicorn in a thread, with one HTTP protocol or the other."""

    def __init__(self, http: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(APP, port=self.port, http=http, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def exchange(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(request)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
        return re.sub(rb"date: [^\r]+", b"date: -", received)


@pytest.fixture
def served() -> Iterator[Served]:
    with Served("api.core.protocol:HttpProtocol") as one:
        yield one


def test_the_answers_are_uvicorns_byte_for_byte(served: Served) -> None:
    with Served("httptools") as plain:
        expected = plain.exchange(PIPELINED)
    assert served.exchange(PIPELINED) == expected
    assert expected.count(b"HTTP/1.1 ") == 5  # every answer, the HEAD and the stream too


class Recorder:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_a_head_goes_out_with_its_body_or_alone_at_the_next_loop_turn() -> None:
    """What uvicorn writes for a response (head, then body), for a HEAD request (head only)
    and before closing: one write per response, nothing held past a loop turn or a close."""
    from api.core.protocol import HeadWithBody

    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"

    async def run() -> tuple[list[bytes], list[bytes], Recorder]:
        sent = Recorder()
        transport = HeadWithBody(sent, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(head)
        transport.write(b"{}")
        after_body = list(sent.writes)
        transport.write(head)  # a HEAD request's answer: no body follows
        await asyncio.sleep(0)
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # interim: at once
        transport.write(head)
        transport.close()
        return after_body, sent.writes, sent

    after_body, writes, sent = asyncio.run(run())
    assert after_body == [head + b"{}"]
    assert writes == [head + b"{}", head, b"HTTP/1.1 100 Continue\r\n\r\n", head]
    assert sent.closed
