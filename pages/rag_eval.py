"""RAG eval page."""

from __future__ import annotations

import streamlit as st

from pages._ui import not_built_yet

st.title("RAG eval")
not_built_yet("RAG eval", "score answers of base and tuned retrievers with RAGAS")
