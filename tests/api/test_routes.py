"""Direct routes (`api.core.routes`): an endpoint that takes only the request and answers a
Response is called as it is; anything FastAPI would have to solve keeps FastAPI's handler,
and both answer the same, errors included. The edge hands such routes their requests past
the router and answers exactly as the whole stack does."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.testclient import TestClient

from api.core import errors
from api.core.edge import Edge
from api.core.routes import DirectRoute, direct_routes, query


def _app() -> tuple[FastAPI, list[str]]:
    seen: list[str] = []
    router = APIRouter(route_class=DirectRoute)

    @router.get("/direct")
    async def direct(request: Request) -> Response:
        if "fail" in query(request):
            raise errors.NotFound("nothing here", code="nothing")
        return Response(query(request).get("q", "-"), headers={"X-Seen": "1"})

    @router.get("/param")
    async def param(request: Request, q: str = "none") -> Response:
        return Response(q)

    @router.get("/model")
    async def model(request: Request) -> dict[str, str]:
        return {"answer": "model"}

    guarded = APIRouter(route_class=DirectRoute)

    @guarded.get("/guarded")
    async def with_dependency(request: Request) -> Response:
        return Response("guarded")

    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    app.include_router(guarded, dependencies=[Depends(lambda: seen.append("dependency"))])
    return app, seen


def test_only_a_request_in_and_a_response_out_is_called_directly() -> None:
    async def direct(request: Request) -> Response:
        return Response()

    async def param(request: Request, q: str) -> Response:
        return Response(q)

    async def model(request: Request) -> dict[str, str]:
        return {}

    assert DirectRoute("/direct", direct).get_route_handler() is direct
    assert DirectRoute("/param", param).get_route_handler() is not param
    assert DirectRoute("/model", model).get_route_handler() is not model
    guarded = DirectRoute("/guarded", direct, dependencies=[Depends(lambda: None)])
    assert guarded.get_route_handler() is not direct


def test_direct_and_solved_routes_answer_as_before() -> None:
    app, seen = _app()
    client = TestClient(app)
    answer = client.get("/direct?q=1&q=2&empty=")
    assert (answer.status_code, answer.text, answer.headers["x-seen"]) == (200, "2", "1")
    assert client.get("/param?q=given").text == "given"
    assert client.get("/model").json() == {"answer": "model"}
    refused = client.get("/direct?fail")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "nothing"
    # a dependency added where the router is included still runs
    assert client.get("/guarded").text == "guarded"
    assert seen == ["dependency"]


def test_query_reads_as_starlette_does() -> None:
    for raw in (b"", b"a=1&a=2", b"a=&b", b"t=x%2By+z&caf%E9=1", b"a=%C3%A9"):
        scope = {"type": "http", "query_string": raw, "headers": []}
        request = Request(scope)
        assert query(request) == dict(request.query_params.items())


def _edge_app(direct: bool) -> FastAPI:
    router = APIRouter(route_class=DirectRoute)

    @router.get("/x402/hot")
    async def hot(request: Request) -> Response:
        if query(request).get("fail"):
            raise errors.Forbidden("not this one", code="refused")
        if query(request).get("crash"):
            raise RuntimeError("a bug")
        return Response("hot", headers={"Cache-Control": "no-store"})

    @router.post("/track/hot")
    async def beacon(request: Request) -> Response:
        return Response(await request.body(), status_code=202)

    app = FastAPI()
    errors.install(app)
    app.add_middleware(
        CORSMiddleware, allow_origins=["https://dash.example"], expose_headers=["X-Request-ID"]
    )
    app.add_middleware(
        Edge, on_catalog_change=lambda scope: None, direct=direct_routes(router) if direct else ()
    )
    app.include_router(router, responses=errors.ERROR_RESPONSES)
    return app


def test_edge_answers_hot_routes_as_the_whole_stack_does() -> None:
    requests = [
        ("GET", "/x402/hot", {}, b""),
        ("GET", "/x402/hot?fail=1", {"Origin": "https://news.example"}, b""),
        ("GET", "/x402/hot", {"Origin": "https://dash.example"}, b""),
        ("POST", "/track/hot", {"Content-Type": "text/plain"}, b"token=abc"),
        ("PUT", "/track/hot", {}, b""),
        ("GET", "/x402/hot?crash=1", {}, b""),
    ]
    answers = []
    for direct in (True, False):
        app = _edge_app(direct)
        with TestClient(app, raise_server_exceptions=False) as client:
            seen = []
            for method, url, headers, body in requests:
                answer = client.request(
                    method, url, headers={**headers, "X-Request-ID": "r1"}, content=body
                )
                seen.append((answer.status_code, sorted(answer.headers.items()), answer.content))
            answers.append(seen)
            edge = app.middleware_stack
            while not isinstance(edge, Edge):
                edge = edge.app  # type: ignore[attr-defined]
            assert (edge._stack() is not None) and bool(edge.direct) == direct
    assert answers[0] == answers[1]
    assert [status for status, _, _ in answers[0]] == [200, 403, 200, 202, 405, 500]
