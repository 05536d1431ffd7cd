"""schemathesis over the whole OpenAPI schema, signed in: no 5xx, every answer conforms to
the schema (documented status, documented body), for a bounded number of examples."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import auth


@pytest.fixture
def api_schema(api):
    return schemathesis.openapi.from_asgi("/openapi.json", api.app)


@pytest.fixture
def signed_in(api, wallet):
    headers = auth(api, wallet)
    api.post("/api/v1/publishers", json={"website_url": "https://a.example"}, headers=headers)
    return headers


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_schema(case, signed_in):
    case.call_and_validate(
        headers=signed_in,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
