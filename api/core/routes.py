"""Routes for the hot path: an endpoint that takes only the request and answers a `Response`
is called directly, without FastAPI's per-request machinery around it (reading the body,
solving dependencies, binding parameters, serializing a return value), which cost about a
third of a fast request. Everything else stays as for any route: the OpenAPI entry, the
route template in `scope["route"]`, exception handlers (Starlette's wrapper, which FastAPI's
extends only with exit stacks for dependencies), middleware.

    router = APIRouter(tags=["ads"], route_class=DirectRoute)

    @router.get("/x402/ad", openapi_extra={"parameters": [...]})
    async def serve_ad(request: Request) -> Response: ...   # called directly

An endpoint with parameters, dependencies (its own or its router's) or a return value that
is not a `Response` keeps FastAPI's handler: the class only takes the shortcut where the
answer is the same."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

import fastapi.routing
import starlette.routing
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import Request
from starlette.responses import Response


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        if self.direct and options.get("max_body_size") is None:
            # Starlette's wrapper: FastAPI's adds two exit stacks for dependencies to close,
            # and a direct endpoint has none (the router's inclusion builds its own)
            self.app = starlette.routing.request_response(endpoint)

    @property
    def direct(self) -> bool:
        """Called directly where it is declared (an inclusion may add dependencies)."""
        return _direct(self.dependant, self.endpoint)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if _direct(self._dependant(), self.endpoint):
            endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
            return endpoint
        return super().get_route_handler()

    def _dependant(self) -> Dependant:
        # an included route is built with its router's dependencies added (FastAPI's
        # context for the inclusion): those are the ones the request would solve
        context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
        context = context_var.get() if context_var is not None else None
        if context is not None and context.original_route is self:
            dependant: Dependant = context.dependant
            return dependant
        return self.dependant


def _direct(dependant: Dependant, endpoint: Callable[..., Any]) -> bool:
    """Only the request, nothing to solve, and a `Response` returned as it is."""
    returns = get_typed_return_annotation(endpoint)
    return (
        dependant.request_param_name is not None
        and not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.dependencies
        )
        and dependant.websocket_param_name is None
        and dependant.http_connection_param_name is None
        and dependant.response_param_name is None
        and dependant.background_tasks_param_name is None
        and dependant.security_scopes_param_name is None
        and isinstance(returns, type)
        and issubclass(returns, Response)
    )


def query(request: Request) -> dict[str, str]:
    """The query string as a plain dict, read as Starlette's `request.query_params` reads it
    (latin-1, blank values kept, the last of a repeated name) without building its
    multi-dict: what the hot endpoints look values up in."""
    raw: bytes = request.scope["query_string"]
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True)) if raw else {}


def direct_routes(*routers: APIRouter) -> list[DirectRoute]:
    """The routes of `routers` that are called directly and have a fixed path: what
    `api.core.edge.Edge` may hand a request to itself (the routers must be included
    without a prefix or dependencies)."""
    return [
        route
        for router in routers
        for route in router.routes
        if isinstance(route, DirectRoute) and route.direct and "{" not in route.path
    ]
