"""Fine-tune page."""

from __future__ import annotations

import streamlit as st

from pages._ui import not_built_yet

st.title("Fine-tune")
not_built_yet("Fine-tune", "train MatryoshkaLoss over MNRL with live progress")
