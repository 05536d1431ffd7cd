"""Field types and defaults the domain packages share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, HttpUrl

# an http(s) URL; the pattern makes the OpenAPI schema as strict as the validation
WebsiteUrl = Annotated[HttpUrl, Field(json_schema_extra={"pattern": "^https?://"})]


def utcnow() -> datetime:
    return datetime.now(UTC)
