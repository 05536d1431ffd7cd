"""Operations fixtures: the tracking suite's in-process API with an ad catalog (ads are served
and tracked as in production, on the embedded Redis), the session stack, and Postgres."""

from __future__ import annotations

from tests.support.fixtures import (  # noqa: F401 (fixtures used by name)
    database_url,
)
from tests.tracking.conftest import settings, site  # noqa: F401
