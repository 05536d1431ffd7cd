"""The README's settings table, generated from `api/core/settings.py` and
`indexer/settings.py` (plus the variables `make run` reads): variable, default, meaning (the
comment above the setting in the source).

    python scripts/settings_table.py            # print the table
    python scripts/settings_table.py --write    # replace it in README.md between its markers
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START, END = "<!-- settings table: start -->", "<!-- settings table: end -->"
INDEXER = {
    "INDEXER_START_BLOCK": ("the deployment's block", "first block to index"),
    "INDEXER_CONFIRMATIONS": (
        "64 (the reorg window)",
        "blocks behind the head counted final when the node has no `finalized` tag",
    ),
    "INDEXER_REORG_WINDOW": ("64", "unfinalized blocks whose hashes are kept to detect reorgs"),
    "INDEXER_POLL_SECONDS": ("1.0", "seconds between polls at the head"),
    "INDEXER_INITIAL_RANGE": ("100", "blocks per first `eth_getLogs` range"),
    "INDEXER_MAX_RANGE": ("100000", "largest block range per `eth_getLogs`"),
    "INDEXER_TARGET_LOGS": ("10000", "logs per range the range size adapts to"),
    "INDEXER_PAYMENT_START_BLOCK": (
        "`INDEXER_START_BLOCK`",
        "where a newly known payment wallet's history of payment-token transfers is read from",
    ),
}
STACK = {
    "ANVIL_PORT": ("8545", "`make run`: the local anvil's port"),
    "API_PORT": ("8000", "`make run`: the API's port"),
    "API_WORKERS": ("1", "`make run`: the API's workers (`python -m api.core.serve --workers`)"),
    "ANVIL_LOG": ("`<run dir>/anvil-<port>.log`", "`make run`: anvil's log file"),
    "BUZZER_RUN_DIR": ("`.run`", "`make run`: the saved local chain, embedded data and logs"),
}


# settings whose source has no comment of their own
MEANINGS = {
    "database_url": "PostgreSQL (`make run`: an embedded one in the run dir)",
    "redis_url": "Redis (`make run`: an embedded one, append-only, in the run dir)",
    "rpc_url": "the chain's JSON-RPC (`make run`: its own anvil)",
    "chain_id": "the chain, checked against the node",
    "nonce_ttl_seconds": "how long a sign-in nonce lives",
    "max_message_bytes": "the largest sign-in message accepted",
    "jwt_secret": "signs sessions (required, ≥ 32 chars; `make run` keeps one in the run dir)",
    "jwt_ttl_seconds": "how long a session lasts",
    "jwt_issuer": "the sessions' `iss`",
    "jwt_audience": "the sessions' `aud`",
    "cors_origins": "origins allowed to call the API from a browser",
}


def api_settings() -> list[tuple[str, str, str]]:
    from api.core.settings import Settings

    source = (ROOT / "api" / "core" / "settings.py").read_text().splitlines()
    rows = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        variable = str(choices[0]) if choices else f"BUZZER_{name.upper()}"
        default = field.default if field.default_factory is None else field.default_factory()
        shown = f"`{default!r}`" if default not in ("", [], None) else "(empty)"
        rows.append((variable, shown, MEANINGS.get(name) or _comment(source, name)))
    return rows


def _comment(source: list[str], name: str) -> str:
    """The comment block nearest above the setting's line (or on it)."""
    index = next((i for i, line in enumerate(source) if re.match(rf"\s+{name}:", line)), -1)
    if index < 0:
        return ""
    if "#" in source[index] and "noqa" not in source[index]:
        return source[index].split("#", 1)[1].strip()
    lines: list[str] = []
    for back in range(index - 1, 0, -1):
        text = source[back].strip()
        if text.startswith("#"):
            lines.insert(0, text.lstrip("# ").strip())
        elif lines or not text or text.startswith(("class ", "model_config", "@")):
            break
    return " ".join(lines).replace("|", "\\|")


def table() -> str:
    rows = api_settings()
    rows += [(k, f"{d}", m) for k, (d, m) in INDEXER.items()]
    rows += [(k, d, m) for k, (d, m) in STACK.items()]
    out = ["| variable | default | meaning |", "|---|---|---|"]
    out += [f"| `{v}` | {d} | {m} |" for v, d, m in rows]
    return "\n".join(out)


def main() -> int:
    text = table()
    if "--write" not in sys.argv:
        print(text)
        return 0
    readme = README.read_text()
    start, end = readme.index(START) + len(START), readme.index(END)
    README.write_text(readme[:start] + "\n" + text + "\n" + readme[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
