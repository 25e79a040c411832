"""Documents page."""

from __future__ import annotations

import streamlit as st

from pages._ui import not_built_yet

st.title("Documents")
not_built_yet("Documents", "load, parse, chunk and index your PDFs into Chroma")
