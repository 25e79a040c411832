"""Runs page: every run with its lineage, status, config and headline figures; delete with
confirmation. Comparison and report export arrive with the end-to-end issue."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core.runs import RUN_KINDS, delete_run, descendants_of, list_runs, load_run
from pages._ui import error_boundary

st.title("Runs")
st.caption(
    "Every stage writes a run folder with a manifest (config, parents, status, library versions, "
    "error). Disk is the truth: a browser refresh loses nothing."
)

kinds = st.multiselect("Kinds", list(RUN_KINDS), default=list(RUN_KINDS), key="runs_kinds")
runs = list_runs(kinds or None)
if not runs:
    st.info("No runs yet. Start on the Documents page (or use the sample corpus there).")
    st.stop()

table = pd.DataFrame(
    [
        {
            "id": r.id,
            "kind": r.kind,
            "name": r.manifest.name,
            "status": r.manifest.status,
            "created": r.manifest.created_at[:19],
            "parents": ", ".join(f"{k}: {v}" for k, v in r.manifest.parents.items()),
            "summary": json.dumps(r.manifest.summary)[:120],
        }
        for r in runs
    ]
)
st.dataframe(table, hide_index=True, width="stretch", key="runs_table")

selected = st.selectbox("Inspect a run", [r.id for r in runs], key="runs_selected")
if selected:
    with error_boundary("Loading the run"):
        run = load_run(selected)
        lineage = []
        current = run
        while current is not None:
            lineage.append(f"{current.kind}:{current.id}")
            parent_ids = list(current.manifest.parents.values())
            current = load_run(parent_ids[0]) if parent_ids else None
        st.markdown("**Lineage:** " + " ← ".join(lineage))
        if run.manifest.error:
            st.error(run.manifest.error)
        left, right = st.columns(2)
        left.markdown("**Config**")
        left.json(run.manifest.config, expanded=False)
        right.markdown("**Summary**")
        right.json(run.manifest.summary, expanded=False)
        st.markdown("**Library versions**")
        st.json(run.manifest.versions, expanded=False)
        st.markdown("**Artifacts:** " + ", ".join(sorted(p.name for p in run.path.iterdir())))
        dependants = descendants_of(run.id)
        with st.expander("Delete this run"):
            if dependants:
                st.warning(
                    "These runs depend on it and are deleted too: "
                    + ", ".join(d.id for d in dependants)
                )
            confirm = st.text_input(f"Type {run.id} to confirm", key="runs_delete_confirm")
            if st.button("Delete", key="runs_delete", disabled=confirm != run.id):
                with error_boundary("Deleting the run"):
                    for dep in dependants:
                        delete_run(dep.id, force=True)
                    delete_run(run.id, force=True)
                    st.success(f"Deleted {run.id}.")
                    st.rerun()
