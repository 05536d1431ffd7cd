"""Field types and defaults the domain packages share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

# an http(s) URL; the pattern makes the OpenAPI schema as strict as the validation
WebsiteUrl = Annotated[HttpUrl, Field(json_schema_extra={"pattern": "^https?://"})]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Body(BaseModel):
    """A request body: a field we do not know (a typo, or `verified`, `status`, `owner` slipped
    in) is a 422 rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")
