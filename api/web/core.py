"""What every page shares: the templates, the signed-in wallet from the session cookie, the
redirect to sign in, and HTML error pages. Pages read through the API's services (the same
functions the JSON routes call) and change state only through the JSON API, from the page's
script, with the session cookie and its CSRF token."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.core.settings import Settings
from api.web.session import csrf_token, page_session

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["atomic"] = lambda units, decimals=6: format_units(units, decimals)

CHAIN_NAMES = {1337: "Local chain", 31337: "Local chain", 84532: "Base Sepolia", 8453: "Base"}
PAGE_SIZE = 20
# no page may be framed by another site (a framed Claim or Fund button could be clicked
# through a decoy); no referrer with wallet-specific paths leaves the site
PAGE_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def format_units(units: int | str | None, decimals: int = 6) -> str:
    """Integer atomic units as a decimal string, exactly (no float on the way): 1500000 →
    "1.50" for a 6-decimal token; at least two decimals, trailing zeros beyond them cut."""
    if units is None:
        return "—"
    value = int(units)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    digits = f"{frac:0{decimals}d}".rstrip("0").ljust(2, "0") if decimals else ""
    return f"{sign}{whole:,}.{digits}" if decimals else f"{sign}{whole:,}"


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page: a signed-in wallet with its CSRF token, or nobody."""

    wallet: str | None
    csrf: str

    @property
    def signed_in(self) -> bool:
        return self.wallet is not None


def viewer(request: Request) -> Viewer:
    settings: Settings = request.app.state.settings
    found = page_session(request, settings)
    if found is None:
        return Viewer(None, "")
    wallet, token = found
    return Viewer(wallet, csrf_token(settings, token))


ViewerDep = Annotated[Viewer, Depends(viewer)]


class SignInRequired(Exception):
    """A signed-in page was asked for without a valid session."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageNotFound(Exception):
    """A page or a resource the viewer may not see (someone else's reads as missing)."""


def signed_in(request: Request, who: ViewerDep) -> str:
    """The wallet of a signed-in page; without a session, a redirect to sign in and back."""
    if who.wallet is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return who.wallet


PageWallet = Annotated[str, Depends(signed_in)]


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    who = viewer(request)
    base = {
        "viewer": who,
        "chain_id": settings.chain_id,
        "chain_name": CHAIN_NAMES.get(settings.chain_id, f"chain {settings.chain_id}"),
        "public_base_url": settings.public_base_url,
        "path": request.url.path,
    }
    response = templates.TemplateResponse(request, name, {**base, **(context or {})}, status)
    response.headers.update(PAGE_HEADERS)
    return response


def page_of(items: list[Any], page: int, size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of a list, with what the pager needs."""
    pages = max(1, -(-len(items) // size))
    page = min(max(1, page), pages)
    return {
        "items": items[(page - 1) * size : page * size],
        "page": page,
        "pages": pages,
        "total": len(items),
    }


def install(app: FastAPI) -> None:
    """The page errors' handlers: sign in first, or an HTML 404."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/sign-in?next={quote(exc.next_path, safe='/')}", 303)

    @app.exception_handler(PageNotFound)
    async def _missing(request: Request, exc: PageNotFound) -> Response:
        return render(request, "not_found.html", {"what": str(exc)}, status=404)

    json_invalid = app.exception_handlers[RequestValidationError]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        """A page asked for with a malformed query (`?page=abc`) answers a page that says
        so; the API keeps its JSON error shape."""
        route = request.scope.get("route")
        if route is None or getattr(route, "include_in_schema", True):
            reply = json_invalid(request, exc)
            return await reply if inspect.isawaitable(reply) else reply
        fields = ", ".join(str(e["loc"][-1]) for e in exc.errors())
        what = f"This address has a value that is not valid ({fields}). Check the link."
        return render(request, "not_found.html", {"what": what, "title": "Bad link"}, 400)
