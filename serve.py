"""ragbench behind its guard: `streamlit run serve.py` serves streamlit_app.py as an ASGI app
(Streamlit's `st.App`) with core.team.guard in front, which holds back uploads of sessions that
have not signed in, bounds what one session uploads, and closes /_stcore/metrics. A team server
starts this way (README, "Team mode"); `streamlit run streamlit_app.py` still works for one
user on their own machine.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from core.team.guard import UploadGuard

app = st.App(
    Path(__file__).resolve().parent / "streamlit_app.py", middleware=[Middleware(UploadGuard)]
)
