"""ragbench: the entrypoint. Routes the pages (st.navigation) and holds the shared sidebar."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import apply_offline_env, chroma_settings_from_env, data_dir, llm_settings_from_env

apply_offline_env()

HERE = Path(__file__).resolve().parent

# The icon ships with the app: a material icon would make every browser fetch it from a font CDN,
# which fails offline and leaks a request from air-gapped installs.
st.set_page_config(
    page_title="ragbench", page_icon=str(HERE / ".streamlit" / "favicon.png"), layout="wide"
)


def sidebar() -> None:
    """LLM, Chroma and device settings shared by every page (kept in session state only). In
    team mode only owners may point the app at other servers (the inputs are disabled for the
    others, and `llm_settings` / `chroma_settings` ignore them) or see the data directory."""
    from pages._ui import may_point_elsewhere

    env_llm = llm_settings_from_env()
    env_chroma = chroma_settings_from_env()
    own = may_point_elsewhere()
    only_owners = None if own else "In team mode only owners point the app at other servers."
    with st.sidebar:
        st.markdown("### ragbench")
        if own:
            st.caption(f"Data: `{data_dir()}`")
        with st.expander("LLM", expanded=False):
            st.radio(
                "Backend",
                ["embedded", "openai"],
                index=0 if env_llm.backend == "embedded" else 1,
                format_func=lambda b: {
                    "embedded": "Embedded SmolLM2-135M (offline, demo quality)",
                    "openai": "OpenAI-compatible server",
                }[b],
                key="llm_backend",
            )
            if st.session_state.get("llm_backend") == "openai":
                st.text_input(
                    "Base URL",
                    env_llm.base_url or "http://localhost:11434/v1",
                    key="llm_base_url",
                    disabled=not own,
                    help=only_owners,
                )
                st.text_input("Model", env_llm.model or "llama3.1", key="llm_model")
                st.text_input(
                    "API key (kept in memory only)",
                    type="password",
                    key="llm_api_key",
                    disabled=not own,
                    help=only_owners
                    or "Also read from .streamlit/secrets.toml (llm_api_key) or RAGBENCH_LLM_API_KEY.",
                )
                st.number_input(
                    "Concurrency", 1, 64, env_llm.max_concurrency, key="llm_concurrency"
                )
                st.checkbox(
                    "Server allows n>1 completions", env_llm.supports_n, key="llm_supports_n"
                )
            else:
                st.caption(
                    "A 135M-parameter model: fine for a demo, not for judging. Point the app at a real server for trustworthy results."
                )
            if st.button("Test connection", key="llm_test"):
                check_llm_connection(env_llm.base_url)
        with st.expander("Chroma", expanded=False):
            st.radio(
                "Vector store",
                ["embedded", "server"],
                index=1 if env_chroma.is_server else 0,
                format_func=lambda m: {
                    "embedded": "Embedded (persistent, in the data folder)",
                    "server": "Chroma server",
                }[m],
                key="chroma_mode",
                disabled=not own,
                help=only_owners,
            )
            if st.session_state.get("chroma_mode") == "server":
                st.text_input(
                    "Host", env_chroma.host or "localhost", key="chroma_host", disabled=not own
                )
                st.number_input(
                    "Port", 1, 65535, env_chroma.port, key="chroma_port", disabled=not own
                )
                st.text_input("Token", type="password", key="chroma_token", disabled=not own)
        from pages._ui import device_description

        st.caption(f"Device: **{device_description()}**")


def check_llm_connection(own_url: str) -> None:
    """Test the LLM connection, audited. On a shared server the report of an address someone
    typed holds nothing the address answered (the server must not fetch pages for people)."""
    from core.llm.client import check_connection
    from core.runs.audit import record
    from pages._ui import error_boundary, llm_settings, team_mode

    with error_boundary("Test connection"):
        settings = llm_settings()
        remote = settings.backend == "openai"
        record("tested the LLM connection", detail=settings.base_url if remote else "embedded")
        typed = remote and settings.base_url.strip().rstrip("/") != own_url.strip().rstrip("/")
        report = check_connection(settings, show_reply=not (typed and team_mode()))
        (st.success if report.ok else st.error)(report.message)
        if report.raw is not None:
            st.code(report.raw[:2000], language="text")


pages = [
    st.Page(HERE / "pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page(HERE / "pages/documents.py", title="Documents", icon=":material/description:"),
    st.Page(HERE / "pages/questions.py", title="Questions", icon=":material/quiz:"),
    st.Page(HERE / "pages/finetune.py", title="Fine-tune", icon=":material/model_training:"),
    st.Page(HERE / "pages/retrieval_eval.py", title="Retrieval eval", icon=":material/target:"),
    st.Page(HERE / "pages/rag_eval.py", title="RAG eval", icon=":material/forum:"),
    st.Page(HERE / "pages/runs.py", title="Runs", icon=":material/history:"),
]
from pages._team_ui import sign_in_gate, signed_in_sidebar  # noqa: E402 - after set_page_config

team = sign_in_gate()  # team mode: stops here at the sign-in form until the session signs in
sidebar()
signed_in_sidebar(team)
nav = st.navigation(pages)
nav.run()
