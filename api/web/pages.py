"""Every router of pages, in the order the app includes them."""

from __future__ import annotations

from fastapi import APIRouter

from api.web.advertiser import router as advertiser
from api.web.demo import router as demo
from api.web.landing import router as landing
from api.web.publisher import router as publisher

PAGE_ROUTERS: tuple[APIRouter, ...] = (landing, publisher, advertiser, demo)
