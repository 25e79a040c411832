"""Streamlit-only: the sign-in gate of team mode (core.team) and who is signed in.

Off: nothing to do, the local owner acts. Password: a form asks for an email and the team's
password; a wrong one is refused (and recorded) and leaves no session. OIDC: Streamlit's
`st.login` with the provider of `[auth]` in secrets.toml. Either way the session's user, with the
role the configuration gives their email, acts for every script run of this session.
"""

from __future__ import annotations

import sys

import streamlit as st

from core.errors import RagbenchError
from core.runs.actor import Actor, act_as, set_fallback
from core.runs.audit import record
from core.team import THROTTLE, TeamConfig, exposure_warning, password_matches, team_config
from pages._ui import SESSION_ACTOR

NOBODY = Actor("nobody (not signed in)", "viewer")
_warned: list[bool] = []  # the exposure warning is printed once per server process


def team_secrets() -> dict:
    """secrets.toml as a dict ({} when there is none)."""
    try:
        return st.secrets.to_dict()
    except Exception:  # noqa: BLE001 - no secrets file is the normal case
        return {}


def sign_in_gate() -> TeamConfig:
    """Sign the session in (or stop the script at the sign-in form) and make its user act."""
    try:
        config = team_config(team_secrets())
    except RagbenchError as exc:  # a team set-up that cannot be used: nobody gets in
        st.error(f"**The team sign-in is misconfigured.** {exc}")
        st.stop()
    warning = exposure_warning(str(st.get_option("server.address") or ""), config)
    if warning and not _warned:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
        _warned.append(True)
    if not config.enabled:
        set_fallback(None)
        st.session_state.pop(SESSION_ACTOR, None)
        if warning:
            st.sidebar.warning(warning, icon="⚠️")
        return config
    set_fallback(NOBODY)  # work outside a signed-in session may read, never change
    actor = st.session_state.get(SESSION_ACTOR)
    if config.mode == "oidc":
        actor = _oidc_actor(config)
    elif actor is None:
        _password_form(config)  # stops the script
    act_as(actor)
    return config


def _oidc_actor(config: TeamConfig) -> Actor:
    if not st.user.is_logged_in:
        st.title("ragbench")
        st.button("Sign in", type="primary", on_click=st.login, key="team_oidc_login")
        st.stop()
    email = str(st.user.get("email") or "")
    role = config.role_for(email)
    if role is None:
        st.error(f"{email or 'This account'} is not on the team's lists. Ask an owner to add it.")
        st.button("Sign out", on_click=st.logout, key="team_oidc_logout")
        st.stop()
    if st.session_state.get(SESSION_ACTOR) != Actor(email, role):
        st.session_state[SESSION_ACTOR] = Actor(email, role)
        record("signed in", detail=f"OIDC, {role}", user=email)
    return st.session_state[SESSION_ACTOR]


def _password_form(config: TeamConfig) -> None:
    st.title("ragbench")
    st.caption("This workbench is shared by a team: sign in with your email and the team password.")
    with st.form("team_sign_in"):
        email = st.text_input("Email", key="team_email")
        password = st.text_input("Team password", type="password", key="team_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        email = email.strip().lower()
        role = config.role_for(email) if email else None
        if THROTTLE.blocked(email):
            record("sign-in refused", detail="too many wrong tries", user=email)
            st.error("Too many wrong tries for this email: wait five minutes and try again.")
            st.stop()
        if email and role and password_matches(password, config.password):
            THROTTLE.succeeded(email)
            st.session_state[SESSION_ACTOR] = Actor(email, role)
            record("signed in", detail=f"password, {role}", user=email)
            st.rerun()
        THROTTLE.failed(email)
        record("sign-in refused", detail="wrong email or password", user=email or "(no email)")
        st.error("Wrong email or password, or this email may not sign in.")
    st.stop()


def signed_in_sidebar(config: TeamConfig) -> None:
    """Who is signed in, what their role allows, and the way out."""
    actor = st.session_state.get(SESSION_ACTOR)
    if not config.enabled or actor is None:
        return
    allowed = {
        "viewer": "read runs and reports",
        "member": "read, and run stages",
        "owner": "read, run stages, and delete",
    }[actor.role]
    st.sidebar.caption(f"Signed in as **{actor.name}** ({actor.role}: {allowed}).")
    if st.sidebar.button("Sign out", key="team_sign_out"):
        record("signed out")
        st.session_state.pop(SESSION_ACTOR, None)
        if config.mode == "oidc":
            st.logout()
        st.rerun()
