"""The API's clock on a local chain follows a chain clock that was moved forward (`make
epoch`): from a fixed offset, or from an offset file the running stack rewrites; anywhere
else it keeps real time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.core.settings import Settings, _offset_in


def test_the_clock_follows_the_offset_file_as_it_is_rewritten(tmp_path: Path) -> None:
    offset_file = tmp_path / "clock-offset"
    settings = Settings(chain_id=1337, clock_offset_file=str(offset_file))
    assert abs(settings.now() - time.time()) < 1  # no file yet: real time

    start = time.time() + 10  # past the read above
    offset_file.write_text("86400\n")
    assert _offset_in(str(offset_file), start) == 86_400
    offset_file.write_text("172800")
    assert _offset_in(str(offset_file), start + 0.5) == 86_400  # read once a second at most
    assert _offset_in(str(offset_file), start + 1.0) == 172_800
    offset_file.write_text("not a number")  # caught half-written: the last good value
    assert _offset_in(str(offset_file), start + 2.0) == 172_800

    moved = tmp_path / "moved"  # a file not read yet: the settings' clock carries its offset
    moved.write_text("3600")
    assert abs(Settings(chain_id=1337, clock_offset_file=str(moved)).now() - time.time() - 3600) < 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("clock_offset_seconds", 3600), ("clock_offset_file", "/tmp/clock-offset")],
)
def test_a_moved_clock_is_refused_off_a_local_chain(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match="local chain only"):
        Settings(chain_id=8453, **{name: value})
