"""The dashboards' pages join the ownership matrix: wallet B, signed in through the session
cookie with its own profiles, gets a 404 page for every page naming one of wallet A's
resources, and nothing of A's in it; A sees its own. Every page route with a resource in its
path must be in the matrix, so a new page cannot skip this check."""

from __future__ import annotations

from fastapi.routing import APIRoute

from api.web.pages import PAGE_ROUTERS
from api.web.router import router as web_router
from tests.api.conftest import Wallet
from tests.api.test_ownership import owned_by_a
from tests.api.test_web_session import open_session

# path → what of A's the page shows to A (and must not show to B)
PAGES = {
    "/advertiser/campaigns/{campaign}": "",  # its name, read below
    "/publisher/sites/{site}": "a2.example",
}


def page_routes() -> set[str]:
    """Every page (the routers the app includes for pages) with a path parameter."""
    return {
        route.path
        for router in (*PAGE_ROUTERS, web_router)
        for route in router.routes
        if isinstance(route, APIRoute)
        and not route.include_in_schema
        and "{" in route.path
        and "GET" in route.methods
    }


def test_every_page_naming_a_resource_is_in_the_matrix():
    covered = {
        path.replace("{campaign}", "{campaign_id}").replace("{site}", "{site_id}") for path in PAGES
    }
    assert page_routes() == covered


def test_wallet_b_gets_not_found_pages_for_wallet_a_resources(api):
    a_headers, ids = owned_by_a(api)
    campaign = api.get(f"/api/v1/campaigns/{ids['campaign']}", headers=a_headers).json()
    shown = {**PAGES, "/advertiser/campaigns/{campaign}": campaign["name"]}

    # A's session as a cookie (the same token): A sees each page with its data
    api.cookies.set("buzzer_session", a_headers["Authorization"].removeprefix("Bearer "))
    for template, data in shown.items():
        page = api.get(template.format(**ids), follow_redirects=False)
        assert page.status_code == 200, template
        assert data in page.text, template

    api.cookies.clear()
    csrf = {"X-CSRF-Token": open_session(api, Wallet())}
    b_site = {"website_url": "https://b.example"}
    assert api.post("/api/v1/publishers", json=b_site, headers=csrf).status_code == 201
    b_company = {"company_name": "B", "website_url": "https://b.example"}
    assert api.post("/api/v1/advertisers", json=b_company, headers=csrf).status_code == 201
    for template, data in shown.items():
        page = api.get(template.format(**ids), follow_redirects=False)
        assert page.status_code == 404, template
        assert "text/html" in page.headers["content-type"]
        assert data not in page.text, template
    for malformed in ("/advertiser/campaigns/not-a-uuid", "/publisher/sites/not-a-uuid"):
        page = api.get(malformed, follow_redirects=False)
        assert page.status_code == 404, malformed
        assert "text/html" in page.headers["content-type"]


def test_a_malformed_page_link_answers_a_page_and_the_api_keeps_json(api):
    open_session(api, Wallet())
    page = api.get("/publisher/sites?page=abc", follow_redirects=False)
    assert page.status_code == 400
    assert "text/html" in page.headers["content-type"]
    assert "not valid (page)" in page.text
    api_reply = api.get("/web/sign-in/message")
    assert api_reply.status_code == 422 and api_reply.json()["error"]["code"] == "validation_error"
