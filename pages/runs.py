"""Runs page."""

from __future__ import annotations

import streamlit as st

from pages._ui import not_built_yet

st.title("Runs")
not_built_yet("Runs", "list, compare and export every run")
