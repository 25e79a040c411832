"""Pages draw icons with Streamlit's material icons, never emoji (issue 26: '⏳' rendered as an
empty box where no emoji font exists)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Emoji a plain text font lacks: pictographs, the technical block's (⏳ ⏹ ⌛), dingbats (✅ ❌)
# and the emoji presentation selector. ★ (U+2605) and arrows are in ordinary fonts.
EMOJI = re.compile("[\U0001f000-\U0001faff\u2300-\u23ff\u2700-\u27bf\ufe0f]")


def _ui_sources() -> list[Path]:
    return [*sorted((ROOT / "pages").glob("*.py")), ROOT / "streamlit_app.py"]


def test_no_page_draws_an_emoji():
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in _ui_sources()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if EMOJI.search(line)
    ]
    assert found == []


def test_the_check_would_see_the_hourglass():
    assert EMOJI.search('STATUS_ICONS = {"running": "⏳", "done": "✅"}')
    assert not EMOJI.search("★ marks the gold chunk → :material/hourglass_top:")
