"""Streamlit-only: the panel that shows a page's running background jobs (progress and Stop),
read from their run folders every 2 s, so a refresh, a closed tab or another browser sees the
same; and the notice of a job that ended while this session watched it."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.runs.actor import acting
from core.runs.folders import Run, load_run
from core.runs.jobs import job_status, request_stop, running_jobs
from pages._ui import act_for_session, locked


def running_panel(
    kind: str, key: str, what: str, stop: Callable[[str], None] | None = None
) -> None:
    """Every running job of `kind` with its progress and a Stop button (`stop(run_id)`, the
    run's own stop request by default), refreshed while there is one. When a job this session
    watched ends, the whole page reruns and `ended_job(key)` returns it once."""
    if running_jobs(kind):
        st.fragment(run_every=2)(_panel)(kind, key, what, stop)


def _panel(kind: str, key: str, what: str, stop: Callable[[str], None] | None = None) -> None:
    act_for_session()  # a fragment's rerun runs only this function: say who acts again
    jobs = running_jobs(kind)
    ended = st.session_state.get(f"{key}_watched", set()) - {r.id for r in jobs}
    st.session_state[f"{key}_watched"] = {r.id for r in jobs}
    if ended:  # a job this page showed has ended: the whole page, with that run
        st.session_state[f"{key}_ended"] = sorted(ended)[-1]
        st.rerun()
    for run in jobs:
        status = job_status(run)  # also marks a job whose process died as failed
        st.markdown(f"**Running:** {run.manifest.name or run.id} (`{run.id}`)")
        count = f" · {status.step}/{status.total_steps}" if status.total_steps else ""
        st.progress(status.fraction or 0.0, text=(status.phase or "starting") + count)
        if st.button(
            "Stop",
            key=f"{key}_stop_{run.id}",
            help="Ends the run as stopped",
            disabled=locked("stop"),
        ):
            (stop or request_stop)(run.id)
            st.toast(f"Stop requested: the {what} stops after its current step.")


def ended_job(kind: str, key: str) -> Run | None:
    """A job of `kind` this session watched that has ended (each one once), or None: the one
    the panel saw end, or one that ended between two runs of the page."""
    run_id = st.session_state.pop(f"{key}_ended", None)
    watched = st.session_state.get(f"{key}_watched", set())
    if run_id is None and watched:
        live = {r.id for r in running_jobs(kind)}
        if watched - live:
            run_id = sorted(watched - live)[-1]
            st.session_state[f"{key}_watched"] = watched & live
    if not run_id:
        return None
    run = load_run(run_id)
    # Another user's job that ended is not news here: this session's pickers stay as they are.
    return run if run.manifest.created_by in ("", acting().name) else None


def ended_notice(run: Run, what: str, done_text: str = "") -> None:
    """Say how a job ended: done (with `done_text`), stopped, or failed with its message."""
    status = run.manifest.status
    if status == "done":
        st.success(done_text or f"{what.capitalize()} **{run.id}** finished.")
    elif status == "stopped":
        st.warning(
            f"{what.capitalize()} **{run.id}** was stopped; what it finished is kept."
            + (f" {run.manifest.error}" if run.manifest.error else "")
        )
    else:
        st.error(f"**{what.capitalize()} {run.id} failed.** {run.manifest.error or ''}")
