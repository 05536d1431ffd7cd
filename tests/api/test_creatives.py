"""Creatives: type by content, size limits, banner sizes, content-addressed storage served
with long cache headers, and the draft's metadata hash following its creatives."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from api.core.storage import cid_v1
from tests.api.conftest import Wallet
from tests.api.test_campaigns import CAMPAIGN, advertiser


def png(width: int, height: int, noise: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (noise % 256, 10, 20)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def draft(api, wallet):
    headers = advertiser(api, wallet)
    campaign = api.post("/api/v1/campaigns", json=CAMPAIGN, headers=headers).json()
    return headers, f"/api/v1/campaigns/{campaign['id']}", campaign


def test_a_banner_is_stored_by_cid_and_served_immutable(api, draft):
    headers, path, campaign = draft
    image = png(300, 250)

    reply = api.post(f"{path}/creatives", files={"file": ("ad.bin", image)}, headers=headers)

    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["cid"] == cid_v1(image) and body["cid"].startswith("bafkrei")
    assert (body["content_type"], body["width"], body["height"]) == ("image/png", 300, 250)
    served = api.get(f"/creatives/{body['cid']}")
    assert served.content == image
    assert served.headers["content-type"] == "image/png"
    assert "immutable" in served.headers["cache-control"]
    assert api.get(path, headers=headers).json()["metadata_hash"] != campaign["metadata_hash"]


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (png(301, 250), 422, "bad_creative"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", 422, "bad_creative"),
        (b"MZ\x90\x00 not an image", 422, "bad_creative"),
        (b"\x00" * 10_000_001, 413, "payload_too_large"),
    ],
    ids=["odd-size", "svg", "executable", "too-large"],
)
def test_bad_uploads_are_refused_and_stored_nowhere(api, draft, data, status, code):
    headers, path, _ = draft
    reply = api.post(f"{path}/creatives", files={"file": ("x.png", data)}, headers=headers)
    assert reply.status_code == status
    assert reply.json()["error"]["code"] == code
    assert api.get(f"/creatives/{cid_v1(data)}").status_code == 404


def test_an_image_above_one_megabyte_is_refused(api, draft):
    headers, path, _ = draft
    big = png(300, 250) + b"\x00" * 1_000_001  # a valid PNG with trailing bytes
    reply = api.post(f"{path}/creatives", files={"file": ("big.png", big)}, headers=headers)
    assert reply.status_code == 413


def test_only_the_owner_uploads(api, draft):
    _, path, _ = draft
    intruder = advertiser(api, Wallet())
    reply = api.post(
        f"{path}/creatives", files={"file": ("a.png", png(300, 250))}, headers=intruder
    )
    assert reply.status_code == 404


def test_unknown_or_malformed_cids_are_404(api):
    assert (
        api.get(
            "/creatives/bafkreiunknownunknownunknownunknownunknownunknownunknownunk"
        ).status_code
        == 404
    )
    assert api.get("/creatives/..%2F..%2Fetc%2Fpasswd").status_code == 404
