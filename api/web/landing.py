"""Pages: landing."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.web.core import render

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request) -> Response:
    return render(request, "landing/home.html")
