"""Field types and defaults the domain packages share."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

# an http(s) URL; the pattern makes the OpenAPI schema as strict as the validation
WebsiteUrl = Annotated[HttpUrl, Field(json_schema_extra={"pattern": "^https?://"})]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Body(BaseModel):
    """A request body: a field we do not know (a typo, or `verified`, `status`, `owner` slipped
    in) is a 422 rather than silently ignored; so is text PostgreSQL cannot store (a NUL
    character, or a lone surrogate that is not UTF-8)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        for text in _strings(value):
            if "\x00" in text:
                raise ValueError("text may not contain NUL characters")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("text must be valid Unicode (no lone surrogates)") from None
        return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
