"""Retrieval eval page."""

from __future__ import annotations

import streamlit as st

from pages._ui import not_built_yet

st.title("Retrieval eval")
not_built_yet("Retrieval eval", "compare base and tuned retrieval per Matryoshka dimension with confidence intervals")
