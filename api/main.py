"""The FastAPI application: `create_app(settings)`; `uvicorn api.main:app` serves it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import redis
from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from api.ads import traffic
from api.ads.catalog import Catalog, bump
from api.ads.payments import Payments
from api.ads.router import Serving
from api.ads.router import router as ads_router
from api.analytics.router import router as analytics_router
from api.auth.router import router as auth_router
from api.campaigns.router import advertisers, campaigns, creatives_files
from api.core import errors
from api.core.db import make_engine
from api.core.edge import Edge
from api.core.redis import connect as connect_redis
from api.core.redis import connect_async
from api.core.routes import direct_routes
from api.core.settings import Settings, get_settings
from api.core.storage import LocalStorage
from api.privacy.router import router as privacy_router
from api.publishers.domains import SafeFetcher, dns_txt
from api.publishers.router import router as publishers_router
from api.settlement.router import router as settlement_router
from api.tracking.router import router as tracking_router
from api.web import core as web
from api.web.pages import PAGE_ROUTERS
from api.web.router import router as web_router
from api.web.router import session_api
from observe import logs

log = logging.getLogger("api")


class ConfigurationError(RuntimeError):
    """The API cannot start with these settings."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if len(settings.jwt_secret) < 32:
        raise ConfigurationError("BUZZER_JWT_SECRET must be set to at least 32 characters")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = connect_redis(settings.redis_url)
        app.state.engine = make_engine(settings.database_url) if settings.database_url else None
        catalog = Catalog(app.state.engine, app.state.redis, settings.chain_id)
        payments = None
        if settings.facilitator_private_key and app.state.engine is not None:
            payments = Payments.from_settings(settings, app.state.engine, app.state.redis)
        serving_cache = connect_async(settings.redis_url, app.state.redis)
        app.state.serving = Serving(settings, catalog, serving_cache, payments)
        traffic.warm()
        catalog.start()
        app.state.serving.leases.start()
        reconciler = asyncio.create_task(_reconcile_forever(payments)) if payments else None
        yield
        if reconciler is not None:
            reconciler.cancel()
        catalog.stop()
        await app.state.serving.leases.stop()  # unused lease budget goes back now
        await serving_cache.aclose()
        app.state.redis.close()
        if app.state.engine is not None:
            app.state.engine.dispose()

    app = FastAPI(title="Buzzer Network API", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.domain_fetcher = SafeFetcher()
    app.state.txt_lookup = dns_txt
    app.state.storage = LocalStorage(Path(settings.storage_dir))
    errors.install(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Request-ID"],
    )

    app.add_middleware(
        Edge,
        on_catalog_change=lambda scope: bump(scope["app"].state.redis),
        direct=direct_routes(ads_router, tracking_router),  # included below as they are
    )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    def dependencies() -> dict[str, str]:
        return {
            "postgres": _check_postgres(app.state.engine),
            "redis": _check_redis(app.state.redis),
            "rpc": _check_rpc(settings.rpc_url, settings.chain_id),
        }

    readiness = Readiness(dependencies)

    @app.get("/readyz", tags=["ops"])
    def readyz() -> Response:
        """PostgreSQL, Redis and the chain's RPC are reachable (checked at most once a second
        per process: a flood of probes costs one check)."""
        checks = readiness.checks()
        ready = all(result == "ok" for result in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        if not ready:
            body = errors.error_body("not_ready", "a dependency is unreachable", checks)
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # the ad and tracking endpoints first: they take most of the traffic, and routes are
    # matched in order
    for router in (ads_router, tracking_router, creatives_files):
        app.include_router(router, responses=errors.ERROR_RESPONSES)
    if settings.api_role == "serving":
        return app  # a hot-path replica: no accounts, analytics, settlement or pages
    routers = (
        auth_router,
        publishers_router,
        advertisers,
        campaigns,
        privacy_router,
        analytics_router,
        settlement_router,
    )
    for router in routers:
        app.include_router(router, responses=errors.ERROR_RESPONSES)
    # the dashboards and landing pages
    web.install(app)
    app.include_router(session_api, responses=errors.ERROR_RESPONSES)
    app.include_router(web_router, responses=errors.ERROR_RESPONSES)
    for pages in PAGE_ROUTERS:
        app.include_router(pages)
    app.mount("/static", StaticFiles(directory=web.HERE / "static"), name="static")
    return app


RECONCILE_SECONDS = 30.0


async def _reconcile_forever(payments: Payments) -> None:
    """Resolve x402 payments left `settling` (a timeout after sending, a crash) from the
    chain, so a client's retry gets its receipt and nothing is ever sent twice."""
    while True:
        await asyncio.sleep(RECONCILE_SECONDS)
        try:
            resolved = await payments.reconcile()
        except Exception:
            log.exception("x402 reconciliation failed; retrying in %.0f s", RECONCILE_SECONDS)
        else:
            if resolved:
                log.info("x402 reconciliation resolved %d payment(s)", resolved)


READY_CACHE_SECONDS = 1.0


class Readiness:
    """The dependency checks of `/readyz`, run at most once per `READY_CACHE_SECONDS`:
    callers within the window get the last result, and callers arriving while a check runs
    wait for it rather than starting their own."""

    def __init__(self, check: Callable[[], dict[str, str]]) -> None:
        self._check = check
        self._lock = threading.Lock()
        self._result: dict[str, str] = {}
        self._fresh_until = 0.0

    def checks(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() >= self._fresh_until:
                self._result = self._check()
                self._fresh_until = time.monotonic() + READY_CACHE_SECONDS
            return self._result


def _check_postgres(engine: Engine | None) -> str:
    if engine is None:
        return "DATABASE_URL is not set"
    try:
        with engine.connect() as conn:  # the app's pool: no new connection per probe
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"unreachable: {lines[0] if lines else exc!r}"
    return "ok"


def _check_redis(cache: redis.Redis) -> str:
    try:
        cache.ping()
    except Exception as exc:
        return f"unreachable: {exc}"
    return "ok"


def _check_rpc(rpc_url: str, chain_id: int) -> str:
    try:
        reply = httpx.post(
            rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=2
        ).json()
        served = int(reply["result"], 16)
    except Exception as exc:
        return f"unreachable: {exc}"
    return "ok" if served == chain_id else f"serves chain {served}, expected {chain_id}"


def app_from_env() -> FastAPI:
    """The app as a server starts it (`uvicorn --factory api.main:app_from_env`): its logs,
    uvicorn's included, as JSON lines (or for a terminal, see `observe.logs`)."""
    logs.configure("api")
    return create_app()
