"""AppTest helpers.

AppTest mis-handles reruns when the main script sits beside a `pages/` folder (it re-runs the
current page instead of the entrypoint, so the sidebar vanishes). Running the real entrypoint
through a one-line wrapper in a temporary folder avoids that and still executes our file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "streamlit_app.py"


def page_path(name: str) -> str:
    """Absolute path of a page script, as st.navigation registers it."""
    return str(ROOT / "pages" / name)


@pytest.fixture
def app(tmp_path) -> AppTest:
    """An AppTest of the real entrypoint (not yet run)."""
    return app_test(tmp_path)


def app_test(tmp_path: Path, timeout: float = 120) -> AppTest:
    """An AppTest of the real entrypoint through a wrapper in `tmp_path` (not yet run)."""
    st.cache_resource.clear()
    st.cache_data.clear()
    wrapper = tmp_path / "app_entry.py"
    wrapper.write_text(
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"runpy.run_path({str(APP)!r}, run_name='__main__')\n"
    )
    return AppTest.from_file(str(wrapper), default_timeout=timeout)
