"""Questions page."""

from __future__ import annotations

import streamlit as st

from pages._ui import not_built_yet

st.title("Questions")
not_built_yet("Questions", "generate synthetic questions with a quality gate, review, import and export them")
