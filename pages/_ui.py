"""Streamlit-only helpers shared by the pages: settings from the sidebar, progress adapter,
error boundary, cached loaders and run pickers. Pages stay thin; logic lives in core."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import streamlit as st

from core.config import (
    ChromaSettings,
    LLMSettings,
    chroma_settings_from_env,
    llm_settings_from_env,
)
from core.errors import RagbenchError
from core.progress import ProgressEvent
from core.questions.splits import SplitConfig


def _leave_pages_directory_mode() -> None:
    """Streamlit treats a `pages/` folder beside the entrypoint as a v1 multipage app until
    `st.navigation` runs once. A first visitor who lands straight on /documents would get the
    page without the entrypoint (no sidebar, every file listed). Switch the server to the
    entrypoint's navigation and rerun, once per process."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_pages_directory_mode()


def _secret(name: str) -> str:
    """A value from .streamlit/secrets.toml, or '' when there is no secrets file."""
    return str(team_secrets().get(name, "") or "")


def team_secrets() -> dict:
    """secrets.toml as a dict ({} when there is none)."""
    try:
        return st.secrets.to_dict()
    except Exception:  # noqa: BLE001 - no secrets file is the normal case
        return {}


def team_mode() -> bool:
    """Whether people sign in to this server (core.team)."""
    from core.team import team_config

    try:
        return team_config(team_secrets()).enabled
    except RagbenchError:
        return True  # misconfigured: the gate refuses everyone; keep secrets back too


def may_point_elsewhere() -> bool:
    """Whether this session may point the app at another LLM or Chroma server: always without
    sign-in; in team mode only an owner, since an address typed in the sidebar makes the server
    send requests from inside its network (members and viewers use the server's own)."""
    from core.runs.actor import acting

    return not team_mode() or acting().role == "owner"


def llm_settings() -> LLMSettings:
    """LLM settings: the sidebar overrides the environment (its URL and key only for whoever
    may point elsewhere); the key comes from the sidebar, secrets or environment and lives only
    in this session's memory (in team mode the server's own key goes only to the server's own
    URL)."""
    from core.team import held_secret

    env = llm_settings_from_env()
    state = st.session_state
    own = may_point_elsewhere()
    base_url = state.get("llm_base_url", env.base_url) if own else env.base_url
    return LLMSettings(
        backend=state.get("llm_backend", env.backend),
        base_url=base_url,
        model=state.get("llm_model", env.model),
        api_key=held_secret(
            (state.get("llm_api_key") or "") if own else "",
            _secret("llm_api_key") or env.api_key,
            base_url,
            env.base_url,
            team_mode(),
        ),
        timeout_s=float(state.get("llm_timeout", env.timeout_s)),
        max_concurrency=int(state.get("llm_concurrency", env.max_concurrency)),
        supports_n=bool(state.get("llm_supports_n", env.supports_n)),
    )


def chroma_settings() -> ChromaSettings:
    """Chroma settings: the sidebar overrides the environment, for whoever may point
    elsewhere; everyone else gets the server's own."""
    from core.team import held_secret

    env = chroma_settings_from_env()
    state = st.session_state
    if not may_point_elsewhere():
        if not env.is_server:
            return ChromaSettings()
        return ChromaSettings(env.host, env.port, _secret("chroma_token") or env.token, env.ssl)
    if state.get("chroma_mode", "server" if env.is_server else "embedded") == "embedded":
        return ChromaSettings()
    host = state.get("chroma_host", env.host)
    port = int(state.get("chroma_port", env.port))
    return ChromaSettings(
        host=host,
        port=port,
        token=held_secret(
            state.get("chroma_token") or "",
            _secret("chroma_token") or env.token,
            f"{host}:{port}",
            f"{env.host}:{env.port}",
            team_mode(),
        ),
    )


class StreamlitProgress:
    """Adapts core's on_progress(ProgressEvent) callbacks to an st.progress bar."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = st.progress(0.0, text=label)

    def __call__(self, event: ProgressEvent) -> None:
        frac = event.fraction
        parts = [self.label, event.message or event.stage]
        if event.total:
            parts.append(f"{event.done}/{event.total}")
        if event.eta_s is not None and event.done < (event.total or 0):
            parts.append(f"ETA {event.eta_s:.0f}s")
        self.bar.progress(frac if frac is not None else 0.0, text=" · ".join(p for p in parts if p))

    def done(self, text: str = "Done") -> None:
        self.bar.progress(1.0, text=text)


@contextlib.contextmanager
def error_boundary(action: str) -> Iterator[None]:
    """Turn project errors into st.error with the message; anything else into st.exception."""
    try:
        yield
    except RagbenchError as exc:
        st.error(f"**{action} failed.** {exc}")
    except Exception as exc:  # noqa: BLE001 - show, do not crash the page
        st.error(f"**{action} failed with an unexpected error:** {type(exc).__name__}: {exc}")
        if os.environ.get("RAGBENCH_DEBUG") == "1":
            st.exception(exc)


SESSION_ACTOR = "team_actor"  # the signed-in user of this browser session (team mode)
SESSION_ID = "team_session"  # the id of its server-side session (password mode)


def session_actor():  # noqa: ANN201 - core.runs.actor.Actor | None
    """This session's signed-in user, with the role the configuration gives them now; None, and
    the session forgotten, when they are off the lists, their server-side session was signed
    out or ended by a change of role or password (password mode)."""
    from core.runs.actor import Actor
    from core.team import team_config
    from core.team.sessions import check_session

    actor = st.session_state.get(SESSION_ACTOR)
    if actor is None:
        return None
    try:
        config = team_config(team_secrets())
    except RagbenchError:
        config = None
    role = config.role_for(actor.name) if config is not None and config.enabled else None
    if config is not None and config.mode == "password":
        session = check_session(st.session_state.get(SESSION_ID, ""), config)
        role = session.role if session is not None and session.email == actor.name else None
    if role is None:
        st.session_state.pop(SESSION_ACTOR, None)
        st.session_state.pop(SESSION_ID, None)
        return None
    if role != actor.role:
        actor = st.session_state[SESSION_ACTOR] = Actor(actor.name, role)
    return actor


def act_for_session() -> None:
    """Make this session's signed-in user the acting user of this script run (team mode): a
    fragment's rerun runs only its function, so it says who acts again. Without sign-in, the
    local owner acts; a session no longer signed in acts as nobody (a viewer)."""
    from core.runs.actor import NOBODY, act_as

    if not team_mode():
        return
    act_as(session_actor() or NOBODY)


def audited(
    data: Callable[[], bytes | str], run_ids: list[str], what: str
) -> Callable[[], bytes | str]:
    """A download button's lazy data that records the export in the audit log when it is
    fetched, in the name of the user who saw the button (the fetch may run on another thread).
    Every download of a run's content goes through here (a CSV also through core.spreadsheet)."""
    from core.runs.actor import acting, acting_as
    from core.runs.audit import record_export

    actor = acting()

    def fetch() -> bytes | str:
        with acting_as(actor):
            record_export(run_ids, what)
        return data()

    return fetch


def guard_page() -> None:
    """The first call of every page: in team mode a session that has not signed in sees nothing
    (even if Streamlit ran the page without the entrypoint's gate), and its user acts."""
    from core.runs.actor import act_as

    if not team_mode():
        return
    actor = session_actor()
    if actor is None:
        st.stop()
    act_as(actor)


def locked(action: str = "run") -> bool:
    """True when the signed-in user's role does not allow `action` (run, stop, delete): the
    button is then disabled; the sidebar says what the role allows. Core refuses it too."""
    from core.runs.actor import acting

    return not acting().can(action)


def not_built_yet(stage: str, issue: str) -> None:
    """Say plainly that a stage is not built yet."""
    st.info(
        f"**{stage} is not built yet.** This page will {issue}. "
        "Nothing here pretends to work until it does.",
        icon=":material/construction:",
    )


def _internal(run) -> bool:  # noqa: ANN001 - core.runs.folders.Run
    """A question set a cross-fit made for one of its folds (or its model to ship): listed under
    the cross-fit on the Runs page, not offered where a user picks a question set."""
    return run.kind == "qa" and str(run.manifest.config.get("source", "")).startswith("crossfit")


# The corpus, question set and model this session works on: set wherever the user picks or
# makes one, read by every page's picker, so a choice carries across pages (a widget's own
# state is dropped when its page is left).
CURRENT_KEYS = {"corpus": "current_corpus", "qa": "current_qa", "model": "current_model"}


def current_run(kind: str) -> str | None:
    """The run of `kind` (corpus, qa, model) this session picked or made last, or None."""
    return st.session_state.get(CURRENT_KEYS[kind]) if kind in CURRENT_KEYS else None


def remember_run(kind: str, run_id: str | None, corpus: str | None = None) -> None:
    """Make `run_id` this session's current run of `kind` (other kinds are not remembered); a
    question set or model also makes its `corpus` current, and a model its question set. Another corpus forgets the current
    question set and model, which belong to the one before."""
    if not run_id or kind not in CURRENT_KEYS:
        return
    if kind == "corpus" and current_run("corpus") not in (None, run_id):
        st.session_state.pop(CURRENT_KEYS["qa"], None)
        st.session_state.pop(CURRENT_KEYS["model"], None)
    st.session_state[CURRENT_KEYS[kind]] = run_id
    if kind == "model":  # a model goes with the question set it trained on
        qa = _parent(run_id, "qa")
        if qa:
            st.session_state[CURRENT_KEYS["qa"]] = qa
            corpus = corpus or _parent(qa, "corpus")
    if corpus and kind != "corpus":
        st.session_state[CURRENT_KEYS["corpus"]] = corpus


def _parent(run_id: str, kind: str) -> str | None:
    """A run's parent of `kind` (None when the run or the parent is missing)."""
    from core.errors import RunError
    from core.runs.folders import load_run

    try:
        return load_run(run_id).manifest.parents.get(kind)
    except RunError:
        return None


def _wanted(kind: str, runs: list) -> str | None:  # noqa: ANN001 - core.runs.folders.Run
    """The run a picker of `kind` should show first: the current one, else the one that goes
    with the current runs of other kinds (a question set of the current corpus, the corpus of
    the current question set), else None (the newest)."""
    ids = [r.id for r in runs]
    if current_run(kind) in ids:
        return current_run(kind)
    corpus = current_run("corpus")
    if kind == "qa" and corpus:
        return next((r.id for r in runs if r.manifest.parents.get("corpus") == corpus), None)
    qa = current_run("qa")
    if kind == "corpus" and qa:
        from core.errors import RunError
        from core.runs.folders import load_run

        try:
            parent = load_run(qa).manifest.parents.get("corpus")
        except RunError:
            return None
        return parent if parent in ids else None
    return None


def preselect(kind: str, key: str, runs: list) -> None:  # noqa: ANN001 - core.runs.folders.Run
    """Before a picker of `kind` with widget `key` over `runs` is drawn: keep the user's pick on
    this page, else show the session's current run (see _wanted), else the newest."""
    if st.session_state.get(key) in {r.id for r in runs}:
        return
    st.session_state.pop(key, None)
    wanted = _wanted(kind, runs)
    if wanted:
        st.session_state[key] = wanted


def resend_label(key: str) -> None:
    """Before a keyed selectbox whose option labels change while its value stays (a run's
    status in its label): set its value again, so Streamlit sends the label it has now. For an
    unchanged value Streamlit (1.67) leaves the browser showing the label it sent last, such as
    '· running ·' after the job ended."""
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]


MARKDOWN_MARKS = set("\\`*_[]{}<>#|~$")


def plain_markdown(text: str) -> str:
    """A document's text shown as it is inside Markdown: one paragraph (a line starting '11.'
    would become a list item) with Markdown's marks escaped."""
    flat = " ".join(text.split())
    out = "".join("\\" + c if c in MARKDOWN_MARKS else c for c in flat)
    marker = re.match(r"(\d+)([.)])", out)  # '11. Escapes' at the start: not a list item
    if marker:
        out = f"{marker.group(1)}\\{marker.group(2)}{out[marker.end() :]}"
    return "\\" + out if out[:1] in ("-", "+", "=") else out


def _picker_label(run: Any) -> str:
    """'name · 2026-12-03T05:44', with the status when the run did not finish ('· failed ·')."""
    status = run.manifest.status
    middle = "" if status == "done" else f" · {status}"
    return f"{run.manifest.name or run.id}{middle} · {run.manifest.created_at[:16]}"


def run_picker(
    kind: str, label: str, key: str, statuses: tuple[str, ...] = ("done",)
) -> str | None:
    """A selectbox of runs of one kind (newest first), showing the session's current run of that
    kind first; a run the user picks in it becomes the current one. Returns the chosen run id,
    or None. (Only a user's pick is remembered: a page may hold two pickers of one kind.)"""
    from core.runs.folders import list_runs

    runs = [r for r in list_runs(kind) if r.manifest.status in statuses and not _internal(r)]
    if not runs:
        st.caption(f"No finished {kind} runs yet.")
        return None
    options = [r.id for r in runs]
    names = {r.id: _picker_label(r) for r in runs}
    preselect(kind, key, runs)
    if key not in st.session_state:  # nothing carried: the newest finished run, not a failed one
        st.session_state[key] = next(
            (r.id for r in runs if r.manifest.status == "done"), runs[0].id
        )
    by_id = {r.id: r for r in runs}

    def picked() -> None:
        run = by_id.get(st.session_state.get(key))
        if run is not None:
            remember_run(kind, run.id, corpus=run.manifest.parents.get("corpus"))

    return st.selectbox(
        label, options, format_func=lambda rid: names.get(rid, rid), key=key, on_change=picked
    )


@st.cache_resource(show_spinner="Loading embedding model…")
def cached_model(source: str, ref: str, device: str = "auto"):  # noqa: ANN201 - SentenceTransformer
    """Load an embedding model once per (source, ref, device) for the whole server."""
    from core.embeddings import ModelSpec, load_model

    return load_model(ModelSpec(source=source, ref=ref), device=device)  # type: ignore[arg-type]


@st.cache_data(show_spinner=False)
def device_description() -> str:
    """The device embeddings and training run on."""
    from core.embeddings import describe_device, select_device

    return describe_device(select_device())


def split_config_ui(key: str, fixed: bool = False) -> SplitConfig | None:
    """Seed and shares of the split by chunk; None (with the error shown) when invalid."""
    with st.expander(
        "Split settings" + (" (for rows the split column leaves blank)" if fixed else "")
    ):
        cols = st.columns(4)
        train = cols[0].number_input("Train share", 0.0, 1.0, 0.7, step=0.05, key=f"{key}_train")
        val = cols[1].number_input("Validation share", 0.0, 1.0, 0.15, step=0.05, key=f"{key}_val")
        test = cols[2].number_input("Test share", 0.0, 1.0, 0.15, step=0.05, key=f"{key}_test")
        seed = cols[3].number_input("Seed", 0, 2**31 - 1, 42, key=f"{key}_seed")
        st.caption("Splits are by chunk: every question of a chunk goes to that chunk's split.")
    try:
        return SplitConfig(train=train, validation=val, test=test, seed=int(seed))
    except RagbenchError as exc:
        st.error(str(exc))
        return None


def dealing_ui(dealing, key: str) -> None:  # noqa: ANN001 - core.questions.splits.Dealing
    """Splits by chunk: each split's questions and chunks, the share asked against the share
    achieved, and what keeps them apart (a group too large to place), with the fix."""
    st.markdown("**Splits by chunk** (shares of chunks, asked against achieved)")
    st.dataframe(dealing.rows(), hide_index=True, key=key)
    for problem in dealing.problems():
        st.warning(problem)


def near_duplicates_ui(key: str) -> bool:
    """Whether to tie near-duplicate questions into one split (loads the embedding model)."""
    return st.checkbox(
        "Keep near-duplicate questions in one split (loads the embedding model)",
        True,
        key=key,
        help="Questions whose embeddings have a cosine above the gate's threshold (0.95) are "
        "dealt into one split, so a paraphrase of a training question is never a test question.",
    )


def near_duplicates_caption(tied: int | None) -> None:
    """What the near-duplicate check found (or that it did not run)."""
    if tied is None:
        st.caption("Near-duplicate questions were not looked for.")
    elif tied:
        st.caption(f"{tied} pair(s) of near-duplicate questions were tied into one split.")
