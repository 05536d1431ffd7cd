"""Content-addressed storage for creatives: a file's name is its CIDv1 (raw codec,
sha2-256, base32), so the same bytes are stored once and a URL never changes meaning.
Local disk now; an IPFS pinning backend can implement the same two methods."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

CID_PATTERN = re.compile(r"^b[a-z2-7]{58}$")


def cid_v1(data: bytes) -> str:
    """CIDv1: version 1, codec raw (0x55), multihash sha2-256 (0x12, 32 bytes), base32."""
    raw = b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


class Storage(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, cid: str) -> bytes | None: ...

    def delete(self, cid: str) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, cid: str) -> Path:
        return self.root / cid[:4] / cid

    def put(self, data: bytes) -> str:
        cid = cid_v1(data)
        path = self._path(cid)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # write then rename: a crash never leaves half a file under a valid name
            fd, tmp = tempfile.mkstemp(dir=path.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        return cid

    def get(self, cid: str) -> bytes | None:
        if not CID_PATTERN.match(cid):
            return None
        path = self._path(cid)
        return path.read_bytes() if path.exists() else None

    def delete(self, cid: str) -> None:
        if CID_PATTERN.match(cid):
            self._path(cid).unlink(missing_ok=True)
