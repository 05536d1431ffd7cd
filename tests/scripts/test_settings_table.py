"""Every setting is in the README's table, and the table is the generated one."""

from __future__ import annotations

import re

from api.core.settings import Settings
from scripts.settings_table import END, INDEXER, README, START, table


def test_every_setting_is_in_the_readme_table() -> None:
    readme = README.read_text()
    shown = readme[readme.index(START) : readme.index(END)]
    indexer_source = (README.parent / "indexer" / "settings.py").read_text()
    wanted = {
        str(getattr(f.validation_alias, "choices", [f"BUZZER_{n.upper()}"])[0])
        for n, f in Settings.model_fields.items()
    }
    wanted |= set(re.findall(r'"(INDEXER_[A-Z_]+)"', indexer_source))
    missing = sorted(v for v in wanted if f"| `{v}` |" not in shown)
    assert missing == [], (
        f"missing from the README: {missing}; run scripts/settings_table.py --write"
    )
    assert set(re.findall(r'"(INDEXER_[A-Z_]+)"', indexer_source)) <= set(INDEXER)
    assert table() in readme, "the table is stale: run python scripts/settings_table.py --write"
