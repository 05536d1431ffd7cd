"""The API's clock on a local chain follows a chain clock that was moved forward (`make
epoch`): from a fixed offset, or from an offset file the running stack rewrites; anywhere
else it keeps real time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.core.settings import Settings


def test_the_clock_follows_the_offset_file_as_it_is_rewritten(tmp_path: Path) -> None:
    offset_file = tmp_path / "clock-offset"
    settings = Settings(chain_id=1337, clock_offset_file=str(offset_file))
    assert abs(settings.now() - time.time()) < 1  # no file yet: real time

    offset_file.write_text("86400\n")
    time.sleep(1.05)  # read again at most once a second
    assert abs(settings.now() - (time.time() + 86_400)) < 1

    offset_file.write_text("not a number")  # caught half-written: the last good value
    time.sleep(1.05)
    assert abs(settings.now() - (time.time() + 86_400)) < 1

    offset_file.write_text("172800")
    time.sleep(1.05)
    assert abs(settings.now() - (time.time() + 172_800)) < 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("clock_offset_seconds", 3600), ("clock_offset_file", "/tmp/clock-offset")],
)
def test_a_moved_clock_is_refused_off_a_local_chain(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match="local chain only"):
        Settings(chain_id=8453, **{name: value})
