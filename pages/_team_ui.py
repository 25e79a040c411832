"""Streamlit-only: the sign-in gate of team mode (core.team) and who is signed in.

Off: nothing to do, the local owner acts. Password: a form asks for an email and the team's
password; every try passes the throttle first (nothing is compared before it), a wrong one is
refused (and recorded) and leaves no session, a right one makes a server-side session whose
signed id the browser keeps in a cookie. OIDC: Streamlit's `st.login` with the provider of
`[auth]` in secrets.toml. Either way the session's user, with the role the configuration gives
their email, acts for every script run of this session, and only a signed-in session may upload
(core.team.guard).
"""

from __future__ import annotations

import math
import sys
from typing import NoReturn

import streamlit as st

from core.errors import InputError, RagbenchError
from core.runs.actor import NOBODY, Actor, act_as, acting_as, set_fallback
from core.runs.audit import record
from core.team import (
    TeamConfig,
    exposure_warning,
    normalise_email,
    password_matches,
    team_config,
)
from core.team.address import client_address
from core.team.guard import allow_uploads, forbid_uploads, installed
from core.team.sessions import (
    DEVICE_COOKIE,
    DEVICE_TTL_S,
    SESSION_COOKIE,
    SESSION_TTL_S,
    cookie_session,
    device_id,
    device_token,
    end_session,
    start_session,
)
from core.team.throttle import THROTTLE, worth_a_line
from pages._ui import SESSION_ACTOR, SESSION_ID, session_actor, team_secrets

COOKIE_KEY = "team_cookies"  # [(name, value, max-age)] to set on the next run
WITHHELD = "(withheld: the email box held the team password)"
GUARD_MISSING = (
    "ragbench runs in team mode without its guard: anyone who opens the page can upload files "
    "into the server's memory before signing in, and /_stcore/metrics is public. Start it with "
    "`streamlit run serve.py` (README, Team mode)."
)
_warned: set[str] = set()  # each warning is printed once per server process


def _warn_once(text: str) -> None:
    if text not in _warned:
        print(f"WARNING: {text}", file=sys.stderr, flush=True)
        _warned.add(text)


def _session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def sign_in_gate() -> TeamConfig:
    """Sign the session in (or stop the script at the sign-in form) and make its user act."""
    try:
        config = team_config(team_secrets())
    except RagbenchError as exc:  # a team set-up that cannot be used: nobody gets in
        forbid_uploads(_session_id())
        _sign_in_only()
        st.error(f"**The team sign-in is misconfigured.** {exc}")
        st.stop()
    warning = exposure_warning(str(st.get_option("server.address") or ""), config)
    if warning:
        _warn_once(warning)
    if not config.enabled:
        set_fallback(None)
        st.session_state.pop(SESSION_ACTOR, None)
        allow_uploads(_session_id(), 0)
        if warning:
            st.sidebar.warning(warning, icon=":material/warning:")
        return config
    set_fallback(NOBODY)  # work outside a signed-in session may read, never change
    if not installed():
        _warn_once(GUARD_MISSING)
    if config.mode == "oidc":
        actor = _oidc_actor(config)
    else:
        _write_cookies()
        actor = session_actor() or _cookie_actor(config)
        if actor is None:
            forbid_uploads(_session_id())
            _password_form(config)  # stops the script
    allow_uploads(_session_id(), config.session_upload_bytes)
    act_as(actor)
    return config


def _write_cookies() -> None:
    """Set (or clear) the cookies the last script run asked for: a reload of the page is a new
    session, and the signed session cookie carries the sign-in over (SameSite=Strict)."""
    cookies = st.session_state.pop(COOKIE_KEY, None)
    if not cookies:
        return
    import streamlit.components.v1 as components

    script = "".join(
        f"window.parent.document.cookie = '{name}={value}; path=/; max-age={max_age}; "
        "SameSite=Strict';"
        for name, value, max_age in cookies
    )
    components.html(f"<script>{script}</script>", height=0)


def _cookie_actor(config: TeamConfig) -> Actor | None:
    """The user of the live server-side session a sign-in cookie names (a reload)."""
    token = _cookie(SESSION_COOKIE)
    session = cookie_session(token, config) if token else None
    if session is None:
        return None
    actor = st.session_state[SESSION_ACTOR] = Actor(session.email, session.role)
    st.session_state[SESSION_ID] = session.id
    with acting_as(actor):
        record("signed in", detail="session cookie (a reload)")
    return actor


def _cookie(name: str) -> str:
    """A cookie the browser sent with this session's connection ('' when none)."""
    value = st.context.cookies.get(name)
    return value if isinstance(value, str) else ""  # AppTest has no connection


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
        forbid_uploads(_session_id())
        _sign_in_only()
        st.title("ragbench")
        st.button("Sign in", type="primary", on_click=st.login, key="team_oidc_login")
        st.stop()
    email = str(st.user.get("email") or "")
    # A provider that says the email is not verified does not prove it: no role from it.
    role = None if st.user.get("email_verified") is False else config.role_for(email)
    if role is None:
        forbid_uploads(_session_id())
        _sign_in_only()
        st.error(
            "This account is not on the team's lists (or its email is not verified or holds "
            "look-alike characters). Ask an owner to add it."
        )
        st.button("Sign out", on_click=st.logout, key="team_oidc_logout")
        st.stop()
    actor = Actor(normalise_email(email), role)
    if st.session_state.get(SESSION_ACTOR) != actor:
        st.session_state[SESSION_ACTOR] = actor
        with acting_as(actor):
            record("signed in", detail="OIDC")
    return actor


def client_where(config: TeamConfig) -> str:
    """'address A.B.C.D' of this session (X-Forwarded-For only from the team's proxies)."""
    seen, hops = st.context.ip_address, st.context.headers.get_all("X-Forwarded-For")
    seen = seen if isinstance(seen, str) else None  # AppTest has no connection
    forwarded = ", ".join(h for h in hops if isinstance(h, str)) if isinstance(hops, list) else ""
    return f"address {client_address(seen, forwarded, config.trusted_proxies)}"


def _password_form(config: TeamConfig) -> None:
    _sign_in_only()
    st.title("ragbench")
    st.caption("This workbench is shared by a team: sign in with your email and the team password.")
    with st.form("team_sign_in"):
        typed = st.text_input("Email", key="team_email")
        password = st.text_input("Team password", type="password", key="team_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        _try_sign_in(config, typed, password)
    st.stop()


def _try_sign_in(config: TeamConfig, typed: str, password: str) -> None:
    """One try: the throttle first (nothing is compared before it), then the email's spelling,
    then the password. Returns only when the try failed (its message shown)."""
    where = client_where(config)
    key = typed.strip().lower()
    device = device_id(_cookie(DEVICE_COOKIE), key, config)
    attempt = THROTTLE.attempt(key, where, device)
    if attempt.wait_s:
        if worth_a_line(attempt.refused):
            record(
                "sign-in refused",
                detail=f"too many wrong tries, {where}; {attempt.refused} refused while waiting",
                user=key if _recordable(key, config) else "",
            )
        st.error(f"Too many wrong tries: wait {math.ceil(attempt.wait_s)} s and try again.")
        return
    try:
        email = normalise_email(typed)
    except InputError as exc:
        record("sign-in refused", detail=f"not an email address, {where}", user="")
        st.error(f"**Sign-in refused.** {exc}")
        return
    role = config.role_for(email)
    right = password_matches(password, config.password)
    if password_matches(email, config.password):  # never an identity, never in the log
        role, email = None, WITHHELD
    if role and right:
        THROTTLE.succeeded(key, where, device)
        _start(config, email, role, where, fresh_device=not device)  # reruns: never returns
    record("sign-in refused", detail=f"wrong email or password, {where}", user=email)
    st.error("Wrong email or password, or this email may not sign in.")


def _recordable(text: str, config: TeamConfig) -> bool:
    """Whether a typed email may go into the log (an email, and not the password)."""
    try:
        return not password_matches(normalise_email(text), config.password)
    except InputError:
        return False


def _start(config: TeamConfig, email: str, role: str, where: str, fresh_device: bool) -> NoReturn:
    """Make the server-side session, ask for its cookies, record the sign-in and rerun."""
    session, token = start_session(email, role, config)
    st.session_state[SESSION_ACTOR] = Actor(email, role)
    st.session_state[SESSION_ID] = session.id
    cookies = [(SESSION_COOKIE, token, SESSION_TTL_S)]
    if fresh_device:
        cookies.append((DEVICE_COOKIE, device_token(email, config), DEVICE_TTL_S))
    st.session_state[COOKIE_KEY] = cookies
    with acting_as(Actor(email, role)):
        record("signed in", detail=f"team password, {where}")
    st.rerun()


def signed_in_sidebar(config: TeamConfig) -> None:
    """Who is signed in, what their role allows, and the way out."""
    actor = st.session_state.get(SESSION_ACTOR)
    if not config.enabled or actor is None:
        return
    allowed = {
        "viewer": "read runs and reports",
        "member": "read, and run stages",
        "owner": "read, run stages, delete, and point the app at other servers",
    }[actor.role]
    st.sidebar.caption(f"Signed in as **{actor.name}** ({actor.role}: {allowed}).")
    if actor.role == "owner" and not installed():
        st.sidebar.warning(GUARD_MISSING, icon=":material/warning:")
    if st.sidebar.button("Sign out", key="team_sign_out"):
        record("signed out")
        end_session(st.session_state.pop(SESSION_ID, ""))
        st.session_state.pop(SESSION_ACTOR, None)
        forbid_uploads(_session_id())
        st.session_state[COOKIE_KEY] = [(SESSION_COOKIE, "", 0)]  # cleared on the next run
        if config.mode == "oidc":
            st.logout()
        st.rerun()
