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
from core.runs.actor import NOBODY, Actor, act_as, acting_as, set_fallback
from core.runs.audit import record
from core.team import (
    ADDRESS_THROTTLE,
    SESSION_COOKIE,
    SESSION_TTL_S,
    THROTTLE,
    TeamConfig,
    exposure_warning,
    key_fingerprint,
    looks_like_email,
    password_matches,
    session_token,
    team_config,
    token_email,
)
from pages._ui import SESSION_ACTOR, SESSION_KEY, session_actor, team_secrets

SIGNED_OUT = "team_signed_out"
COOKIE_KEY = "team_cookie"  # (value, max-age) for the sign-in cookie, set on the next run
_warned: list[bool] = []  # the exposure warning is printed once per server process


def sign_in_gate() -> TeamConfig:
    """Sign the session in (or stop the script at the sign-in form) and make its user act."""
    try:
        config = team_config(team_secrets())
    except RagbenchError as exc:  # a team set-up that cannot be used: nobody gets in
        _sign_in_only()
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
    if config.mode == "oidc":
        actor = _oidc_actor(config)
    else:
        _write_cookie()
        actor = session_actor() or _cookie_actor(config)
        if actor is None:
            _password_form(config)  # stops the script
    act_as(actor)
    return config


def _write_cookie() -> None:
    """Set (or clear) the sign-in cookie the last script run asked for: a reload of the page is a
    new session, and the signed cookie carries the sign-in over (SameSite=Strict)."""
    if COOKIE_KEY not in st.session_state:
        return
    value, max_age = st.session_state.pop(COOKIE_KEY)
    import streamlit.components.v1 as components

    components.html(
        "<script>window.parent.document.cookie = "
        f"'{SESSION_COOKIE}={value}; path=/; max-age={max_age}; SameSite=Strict';</script>",
        height=0,
    )


def _cookie_actor(config: TeamConfig) -> Actor | None:
    """The user a valid sign-in cookie names, with the role the configuration gives them now."""
    if st.session_state.get(SIGNED_OUT):  # this session's cookies predate the sign-out
        return None
    token = st.context.cookies.get(SESSION_COOKIE)
    email = token_email(token, config) if token else None
    role = config.role_for(email) if email else None
    if not (email and role):
        return None
    actor = st.session_state[SESSION_ACTOR] = Actor(email, role)
    st.session_state[SESSION_KEY] = key_fingerprint(config)
    with acting_as(actor):
        record("signed in", detail="session cookie (a reload)")
    return actor


def _sign_in_only() -> None:
    """Register a single hidden page before showing the sign-in form: without a navigation,
    Streamlit would list (and serve) every script in pages/ to a visitor who has not signed in."""
    st.navigation(
        [st.Page(_sign_in_placeholder, title="Sign in", url_path="sign-in")], position="hidden"
    )


def _sign_in_placeholder() -> None:
    """The only page of a session that has not signed in (the form is drawn by the gate)."""


def _oidc_actor(config: TeamConfig) -> Actor:
    if not st.user.get("is_logged_in", False):
        _sign_in_only()
        st.title("ragbench")
        st.button("Sign in", type="primary", on_click=st.login, key="team_oidc_login")
        st.stop()
    email = str(st.user.get("email") or "")
    # A provider that says the email is not verified does not prove it: no role from it.
    role = None if st.user.get("email_verified") is False else config.role_for(email)
    if role is None:
        _sign_in_only()
        st.error(f"{email or 'This account'} is not on the team's lists. Ask an owner to add it.")
        st.button("Sign out", on_click=st.logout, key="team_oidc_logout")
        st.stop()
    if st.session_state.get(SESSION_ACTOR) != Actor(email, role):
        st.session_state[SESSION_ACTOR] = Actor(email, role)
        with acting_as(Actor(email, role)):
            record("signed in", detail="OIDC")
    return st.session_state[SESSION_ACTOR]


def _password_form(config: TeamConfig) -> None:
    _sign_in_only()
    st.title("ragbench")
    st.caption("This workbench is shared by a team: sign in with your email and the team password.")
    with st.form("team_sign_in"):
        email = st.text_input("Email", key="team_email")
        password = st.text_input("Team password", type="password", key="team_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        email = email.strip().lower()
        where = f"address {st.context.ip_address or 'unknown'}"
        if not looks_like_email(email) or password_matches(email, config.password):
            # Not an identity (or the password typed in the wrong box): nothing is recorded.
            st.error("Enter your email address (name@example.com) and the team password.")
            st.stop()
        if THROTTLE.blocked(email) or ADDRESS_THROTTLE.blocked(where):
            record("sign-in refused", detail=f"too many wrong tries, {where}", user=email)
            st.error("Too many wrong tries: wait five minutes and try again.")
            st.stop()
        role = config.role_for(email)
        if role and password_matches(password, config.password):
            THROTTLE.succeeded(email)
            st.session_state[SESSION_ACTOR] = Actor(email, role)
            st.session_state[SESSION_KEY] = key_fingerprint(config)
            st.session_state[COOKIE_KEY] = (session_token(email, config), SESSION_TTL_S)
            st.session_state.pop(SIGNED_OUT, None)
            with acting_as(Actor(email, role)):
                record("signed in", detail=f"team password, {where}")
            st.rerun()
        THROTTLE.failed(email)
        ADDRESS_THROTTLE.failed(where)
        record("sign-in refused", detail=f"wrong email or password, {where}", user=email)
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
        st.session_state[COOKIE_KEY] = ("", 0)  # the cookie is cleared on the next run
        st.session_state[SIGNED_OUT] = True
        if config.mode == "oidc":
            st.logout()
        st.rerun()
