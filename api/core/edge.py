"""The outermost layer of every request, as one plain ASGI middleware (Starlette's
`@app.middleware("http")` costs a task and a stream per request and per layer):

- a request id (the caller's `X-Request-ID` or a new one), echoed in the response and on
  every log line written while the request is handled (`observe.logs.bound`), and one access
  line per request with its method, path, route, status and time;
- Prometheus counts and latency per route template;
- open CORS for what publishers' pages fetch (`/x402/`, `/track/`, `/creatives/`), with the
  x402 headers exposed; the dashboard API keeps its own origin list;
- after a successful edit of a campaign, slot or profile, a bump of the ad catalog version;
- the hot routes (`direct`: `/x402/ad`, `/track/impression`, see `api.core.routes`) handed
  their request here, past the layers that only route it: the router's matching, FastAPI's
  exit-stack layer. What those layers give a request is given here the same way (the route
  in `scope["route"]`, the app's exception handlers, CORSMiddleware's headers), so the
  answer is the one the full stack gives; any other request goes through the stack."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.routing import APIRoute
from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Router

from api.core.errors import error_body
from observe.logs import bound
from observe.metrics import Labelled

log = logging.getLogger("api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUESTS = Counter("buzzer_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("buzzer_http_request_seconds", "HTTP request latency", ["route"])
_requests, _latency = Labelled(REQUESTS), Labelled(LATENCY)
PUBLIC_PREFIXES = ("/x402/", "/track/", "/creatives/")
PROBES = ("/healthz", "/readyz")
EXPOSED = (
    b"PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE, X-Buzzer-Receipt, Retry-After, "
    b"X-Request-ID"
)
PREFLIGHT = [
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"Content-Type, PAYMENT-SIGNATURE, X-PAYMENT, X-Buzzer-Receipt",
    ),
    (b"access-control-max-age", b"86400"),
]
CATALOG_PREFIXES = ("/api/v1/campaigns", "/api/v1/publishers")
EDITS = {"POST", "PATCH", "PUT", "DELETE"}
TX_BUILDERS = ("-tx", "-txs")
NUL_REFUSED = json.dumps(
    error_body("bad_request", "NUL characters are not allowed in URLs")
).encode()


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        on_catalog_change: Callable[[Scope], None],
        direct: Iterable[APIRoute] = (),
    ) -> None:
        self.app = app
        self.on_catalog_change = on_catalog_change
        self.direct = {
            (method, route.path): route for route in direct for method in route.methods or ()
        }
        self._inner: tuple[CORSMiddleware, Any, Router] | None = None
        self._looked = False

    def _stack(self) -> tuple[CORSMiddleware, Any, Router] | None:
        """The layers under this one, when they are exactly CORS → exception handlers →
        exit stack → router (None otherwise: every request then takes the stack)."""
        if not self._looked:
            self._looked = True
            cors = self.app
            exceptions = getattr(cors, "app", None)
            exit_stack = getattr(exceptions, "app", None)
            router = getattr(exit_stack, "app", None)
            if (
                isinstance(cors, CORSMiddleware)
                and isinstance(exceptions, ExceptionMiddleware)
                and isinstance(exit_stack, AsyncExitStackMiddleware)
                and isinstance(router, Router)
            ):
                handlers = (exceptions._exception_handlers, exceptions._status_handlers)
                self._inner = (cors, handlers, router)
        return self._inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        public = path.startswith(PUBLIC_PREFIXES)
        rid = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:128]
                break
        rid = rid or uuid.uuid4().hex
        with bound(request_id=rid):
            await self._handle(scope, receive, send, rid, path, method, public)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        path: str,
        method: str,
        public: bool,
    ) -> None:
        started = time.perf_counter()
        status = 500

        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            # nothing we store or look up may hold a NUL character: refuse it at the door
            headers = [(b"content-type", b"application/json"), (b"x-request-id", rid.encode())]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": NUL_REFUSED})
            status = 400
        elif public and method == "OPTIONS":
            headers = [*PREFLIGHT, *_cors(), (b"x-request-id", rid.encode())]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            status = 204
        else:

            async def send_wrapped(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = list(message.get("headers", []))
                    headers.append((b"x-request-id", rid.encode()))
                    if public:
                        headers.extend(_cors())
                    message["headers"] = headers
                await send(message)

            hot = self.direct.get((method, path)) if public else None
            stack = self._stack() if hot is not None else None
            if hot is not None and stack is not None:
                cors, handlers, router = stack
                # what the exception layer and the router would have set
                scope["starlette.exception_handlers"] = handlers
                scope.setdefault("router", router)
                scope["endpoint"], scope["path_params"], scope["route"] = hot.endpoint, {}, hot
                asked = Headers(scope=scope)
                cors_send = functools.partial(cors.send, send=send_wrapped, request_headers=asked)
                await hot.app(scope, receive, cors_send)
            else:
                await self.app(scope, receive, send_wrapped)
            if (
                method in EDITS
                and status < 400
                and path.startswith(CATALOG_PREFIXES)
                and not path.endswith(TX_BUILDERS)  # they only build a transaction to sign
            ):
                self.on_catalog_change(scope)

        elapsed = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", "unmatched")
        _requests(method, route, str(status)).inc()
        _latency(route).observe(elapsed)
        # the ad and tracking endpoints are the hot path, and the liveness and readiness
        # probes are asked every few seconds by every orchestrator: their access lines are
        # DEBUG (an access line costs ~120 µs), their errors are still logged with the
        # request id
        quiet = public or path in PROBES
        level = logging.DEBUG if quiet and status < 500 else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s %s %d %.1fms",
                method,
                path,
                status,
                elapsed * 1000,
                extra={
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )


def _cors() -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", EXPOSED)]
