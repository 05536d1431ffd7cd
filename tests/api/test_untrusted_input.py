"""Every parser of untrusted input, fed arbitrary bytes and structures by hypothesis: the
`/x402/ad` query and the headers it reads (user agent, forwarded chain, country, payment),
x402 payment payloads, JSON bodies of every route that takes one, tracking tokens, and sign-in
messages. The answer is the route's own success or a 4xx in the one error shape; never a 5xx.

The requests come from a trusted proxy's address, so the forwarded chain is parsed too. The
app is the one of the `api` fixture (real Postgres, Redis and anvil) with a registered site."""

from __future__ import annotations

import base64
import json
import re
import string
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from x402.http.utils import decode_payment_required_header
from x402.schemas import PaymentRequirements

from api.ads.payments import Payments
from tests.ads.conftest import client_header
from tests.ads.test_endpoint import AGENT, BROWSER, campaign_body, site  # noqa: F401 (fixtures)
from tests.api.conftest import Wallet
from tests.support.chain import dev_account

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROXY = "10.0.0.1"
METHODS_WITH_BODIES = ("post", "put", "patch")

# what a header can carry once an HTTP server has read it: latin-1, no CR, LF or NUL
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=200,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=24,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_client_error_at_most(reply: Any) -> None:
    """A success of the route, or a 4xx in the one error shape; never a 5xx."""
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        error = reply.json()["error"]
        assert {"code", "message", "details"} <= set(error), reply.text
        assert isinstance(error["code"], str) and error["code"]


@pytest.fixture
def fuzz(api: TestClient) -> Iterator[TestClient]:
    """A client of `api`'s app at a trusted proxy's address, with x402 payments on and the
    per-IP limits out of the way; a 5xx is answered, not raised."""
    state = api.app.state
    state.settings.trusted_proxies = [PROXY]
    state.settings.rate_limit_ip_per_minute = 1_000_000
    state.settings.rate_limit_ad_per_minute = 1_000_000
    facilitator = "0x" + dev_account(20).key.hex().removeprefix("0x")
    live = state.settings.model_copy(update={"facilitator_private_key": facilitator})
    state.serving.payments = Payments.from_settings(live, state.engine)
    client = TestClient(api.app, client=(PROXY, 4000), raise_server_exceptions=False)
    client.portal = api.portal  # the app's async Redis client lives on that event loop
    yield client


@pytest.fixture
def api_recursion_limit() -> Iterator[None]:
    """The API process's recursion limit (Python's 1,000): py_ecc, which ape imports, raises
    the test process's to 100,000, under which a 1,000-deep JSON document parses."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000)
    yield
    sys.setrecursionlimit(before)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- GET /x402/ad: the query and the headers ------------------------------------------------


AD_PARAMS = ["pub_id", "slot_id", "format", "geo", "device", "ad_free", "n"]


@FUZZ
@given(data=st.data())
def test_any_ad_query_and_headers_are_answered_without_a_5xx(fuzz, site, data):
    known = st.sampled_from(
        [site["pub"], site["slot"], "banner", "native", "US", "mobile", "1", "0", "5", "true"]
    )
    params = data.draw(
        st.lists(
            st.tuples(st.sampled_from(AD_PARAMS) | st.text(max_size=8), known | st.text()),
            max_size=8,
        )
    )
    headers = data.draw(
        st.dictionaries(
            st.sampled_from(
                ["user-agent", "x-forwarded-for", "forwarded", "cf-ipcountry", "accept"]
            ),
            header_text | st.sampled_from([BROWSER, AGENT, "203.0.113.9, 10.0.0.1", "US"]),
        )
    )
    reply = fuzz.get(
        "/x402/ad", params=params, headers={k: v.encode("latin-1") for k, v in headers.items()}
    )
    assert_client_error_at_most(reply)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_any_raw_ad_query_string_is_answered_without_a_5xx(fuzz, raw):
    query = "".join(f"%{byte:02X}" if chr(byte) not in "=&" else chr(byte) for byte in raw)
    assert_client_error_at_most(fuzz.get(f"/x402/ad?{query}"))


# -- payment headers ------------------------------------------------------------------------


def site_terms(fuzz: TestClient, site: dict[str, Any]) -> PaymentRequirements:
    """The agent price's x402 terms, as the 402 states them."""
    query = {"pub_id": site["pub"], "slot_id": site["slot"], "format": "banner"}
    reply = fuzz.get("/x402/ad", params=query, headers={"User-Agent": AGENT})
    assert reply.status_code == 402, reply.text
    return decode_payment_required_header(reply.headers["PAYMENT-REQUIRED"]).accepts[0]


def mutated(template: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """`template` with the value at `path` (as far as it exists) replaced by `value`."""
    copy = json.loads(json.dumps(template))
    node = copy
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            break
        node = node[key]
    node[path[-1]] = value
    return copy


PAYLOAD_PATHS = [
    ["x402Version"],
    ["payload"],
    ["payload", "signature"],
    ["payload", "authorization"],
    ["payload", "authorization", "from"],
    ["payload", "authorization", "value"],
    ["payload", "authorization", "validBefore"],
    ["payload", "authorization", "nonce"],
    ["accepted"],
    ["accepted", "amount"],
    ["accepted", "network"],
    ["accepted", "extra"],
    ["resource"],
    ["extensions"],
]


@FUZZ
@given(data=st.data())
def test_any_payment_header_is_answered_without_a_5xx(fuzz, site, data):
    terms = site_terms(fuzz, site)
    payer = Wallet().account
    template = json.loads(base64.b64decode(client_header(payer, terms)))
    value = data.draw(
        header_text
        | st.binary(max_size=300).map(b64)
        | json_values.map(lambda v: b64(json.dumps(v).encode()))
        | st.builds(mutated, st.just(template), st.sampled_from(PAYLOAD_PATHS), json_values).map(
            lambda v: b64(json.dumps(v).encode())
        )
    )
    name = data.draw(st.sampled_from(["PAYMENT-SIGNATURE", "X-PAYMENT"]))
    ad_free = data.draw(st.sampled_from(["0", "1"]))
    query = {"pub_id": site["pub"], "slot_id": site["slot"], "format": "banner", "ad_free": ad_free}
    reply = fuzz.get(
        "/x402/ad",
        params=query,
        headers={"User-Agent": AGENT, name: value.encode("latin-1", "replace")},
    )
    assert_client_error_at_most(reply)


@pytest.mark.usefixtures("api_recursion_limit")
@pytest.mark.parametrize("name", ["PAYMENT-SIGNATURE", "X-PAYMENT"])
def test_a_payment_header_nested_1000_deep_is_a_402_invalid_payload(fuzz, site, name):
    query = {"pub_id": site["pub"], "slot_id": site["slot"], "format": "banner"}
    for document in (nested(1_000), '{"x402Version": 2, "payload": ' + nested(1_000) + "}"):
        reply = fuzz.get(
            "/x402/ad", params=query, headers={"User-Agent": AGENT, name: b64(document.encode())}
        )
        assert reply.status_code == 402, reply.text
        assert reply.json()["error"]["code"] == "invalid_payload"
        assert "PAYMENT-REQUIRED" in reply.headers  # the terms again, to pay anew


# -- JSON bodies ----------------------------------------------------------------------------


def routes_with_bodies(fuzz: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every documented route that takes a body, path parameters filled."""
    found = []
    for path, operations in fuzz.app.openapi()["paths"].items():
        for method, operation in operations.items():
            if method in METHODS_WITH_BODIES and "requestBody" in operation:
                found.append((method, re.sub(r"\{[^}]+\}", "1", path)))
    return found


@FUZZ
@given(data=st.data())
def test_any_body_to_any_route_is_answered_without_a_5xx(fuzz, site, data):
    method, path = data.draw(st.sampled_from(routes_with_bodies(fuzz)))
    body = data.draw(json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=300))
    content_type = data.draw(
        st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
    )
    reply = fuzz.request(
        method.upper(),
        path,
        content=body,
        headers={**site["p"], "Content-Type": content_type},
    )
    assert_client_error_at_most(reply)


@pytest.mark.usefixtures("api_recursion_limit")
def test_a_json_body_nested_1000_deep_is_a_4xx(fuzz):
    reply = fuzz.post(
        "/api/v1/auth/verify",
        content=nested(1_000).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_client_error_at_most(reply)
    assert reply.status_code in (400, 422)


# -- tracking tokens ------------------------------------------------------------------------


tokens = (
    st.text(max_size=600)
    | st.text(string.ascii_letters + string.digits + "-_.", max_size=600)
    | st.binary(max_size=400).map(lambda raw: base64.urlsafe_b64encode(raw).decode())
)


@FUZZ
@given(token=tokens, body=st.binary(max_size=500) | tokens.map(str.encode), data=st.data())
def test_any_tracking_token_or_beacon_is_answered_without_a_5xx(fuzz, token, body, data):
    pixel = fuzz.get("/track/impression", params={"token": token})
    if "\x00" in token:  # the edge refuses a NUL anywhere in a URL
        assert pixel.status_code == 400 and pixel.json()["error"]["code"] == "bad_request"
    else:
        assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"

    content_type = data.draw(
        st.sampled_from(["text/plain", "application/json", "application/x-www-form-urlencoded"])
    )
    beacon = fuzz.post("/track/impression", content=body, headers={"Content-Type": content_type})
    assert beacon.status_code == 204

    click = fuzz.get(f"/track/click/{quote(token, safe='')}")
    assert_client_error_at_most(click)
    assert click.status_code in (400, 404), click.text


@pytest.mark.usefixtures("api_recursion_limit")
def test_a_beacon_nested_1000_deep_is_received_like_any_other(fuzz):
    body = ('{"token": ' + nested(1_000) + "}").encode()
    reply = fuzz.post("/track/impression", content=body, headers={"Content-Type": "text/plain"})
    assert reply.status_code == 204


# -- sign-in messages -----------------------------------------------------------------------


uint256 = st.integers(0, 2**256 - 1)


def rsv(r: int, s: int, v: int) -> str:
    return "0x" + r.to_bytes(32, "big").hex() + s.to_bytes(32, "big").hex() + f"{v:02x}"


@FUZZ
@given(data=st.data())
def test_any_sign_in_message_is_answered_without_a_5xx(fuzz, data):
    wallet = Wallet()
    good = wallet.message("abcdef0123456789").splitlines()
    lines = list(good)
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.integers(0, len(lines) - 1))
        prefix = lines[where].split(": ", 1)[0] + ": " if ": " in lines[where] else ""
        lines[where] = prefix + data.draw(st.text(max_size=60))
    message = data.draw(st.just("\n".join(lines)) | st.text(max_size=600))
    signature = data.draw(
        st.just(wallet.sign(message))
        | st.builds(rsv, uint256, uint256, st.integers(0, 255))
        | st.binary(max_size=80).map(lambda b: "0x" + b.hex())
        | st.text("0123456789abcdef", min_size=1, max_size=131).map(lambda h: "0x" + h)
    )
    reply = fuzz.post("/api/v1/auth/verify", json={"message": message, "signature": signature})
    assert_client_error_at_most(reply)
    assert reply.status_code in (401, 413, 422), reply.text
