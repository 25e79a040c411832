"""The sign-in gate through the real entrypoint (AppTest): nothing of the app runs before sign-in,
a wrong password leaves no session, a viewer's buttons are disabled, OIDC shows its button."""

from __future__ import annotations

import pytest

from core.runs.actor import set_fallback
from core.runs.audit import read_audit
from core.team.throttle import THROTTLE
from tests.app.conftest import page_path


@pytest.fixture(autouse=True)
def team_env(monkeypatch):
    monkeypatch.setenv("RAGBENCH_TEAM_PASSWORD", "pw-app-test")
    monkeypatch.setenv("RAGBENCH_TEAM_MEMBERS", "member@team.test")
    THROTTLE.clear()  # every AppTest signs in from the same (unknown) address
    yield
    THROTTLE.clear()
    set_fallback(None)  # the gate set a process-wide fallback: other tests act as the owner


def sign_in(app, email: str, password: str):
    app.text_input(key="team_email").set_value(email)
    app.text_input(key="team_password").set_value(password)
    return app.button[0].click().run()


def test_a_wrong_password_is_refused_recorded_and_leaves_no_session(app):
    app.run()
    assert not app.exception, app.exception
    assert app.title[0].value == "ragbench"
    assert "team_actor" not in app.session_state
    sign_in(app, "member@team.test", "wrong")
    assert [e.value for e in app.error] == [
        "Wrong email or password, or this email may not sign in."
    ]
    assert "team_actor" not in app.session_state
    assert not app.sidebar.caption  # nothing of the app (its sidebar) was drawn
    (event,) = read_audit()
    assert (event["user"], event["action"]) == ("member@team.test", "sign-in refused")
    assert "pw-app-test" not in str(event) and "wrong" not in event["user"]


def test_a_member_signs_in_and_a_viewer_finds_the_buttons_disabled(app):
    app.run()
    sign_in(app, "member@team.test", "pw-app-test")
    assert not app.exception, app.exception
    assert any("Signed in as **member@team.test** (member" in c.value for c in app.sidebar.caption)
    app.switch_page(page_path("documents.py")).run()
    assert not app.button(key="docs_sample").disabled

    app.session_state["team_actor"] = None  # a new session: sign in again, as a viewer
    del app.session_state["team_actor"]
    app.run()
    sign_in(app, "viewer@team.test", "pw-app-test")
    app.switch_page(page_path("documents.py")).run()
    assert not app.exception, app.exception
    assert app.button(key="docs_sample").disabled
    assert [e["action"] for e in read_audit()][:1] == ["signed in"]


def test_oidc_shows_the_providers_sign_in_button_and_nothing_else(app, monkeypatch):
    monkeypatch.delenv("RAGBENCH_TEAM_PASSWORD")
    app.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "id",
        "client_secret": "secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    app.run()
    assert not app.exception, app.exception
    assert [b.label for b in app.button] == ["Sign in"]
    assert not app.sidebar.caption


def test_a_session_is_checked_on_every_run_a_role_or_password_change_ends_it(app, monkeypatch):
    app.run()
    sign_in(app, "member@team.test", "pw-app-test")
    assert app.session_state["team_actor"].role == "member"
    monkeypatch.setenv("RAGBENCH_TEAM_MEMBERS", "")  # no longer a member: signs in again
    app.run()
    assert "team_actor" not in app.session_state
    sign_in(app, "member@team.test", "pw-app-test")
    assert app.session_state["team_actor"].role == "viewer"
    monkeypatch.setenv("RAGBENCH_TEAM_PASSWORD", "a-new-password")  # everyone signs in again
    app.run()
    assert "team_actor" not in app.session_state
    assert app.text_input(key="team_password") is not None


def test_a_password_typed_in_the_email_box_is_never_recorded(app):
    from core.runs.audit import audit_path

    app.run()
    sign_in(app, "pw-app-test", "pw-app-test")
    assert [e.value for e in app.error] == [
        "**Sign-in refused.** This is not an email address. Fix: enter it as name@example.com."
    ]
    (event,) = read_audit()  # the try is counted and recorded, without what was typed
    assert (event["user"], event["action"]) == ("", "sign-in refused")
    assert "pw-app-test" not in audit_path().read_text()


def test_a_page_run_without_the_entrypoint_shows_nothing_before_sign_in():
    """Streamlit can run a script of pages/ by itself (its old pages-folder mode): the page's
    own guard stops it."""
    from streamlit.testing.v1 import AppTest

    page = AppTest.from_file(page_path("runs.py"), default_timeout=60).run()
    assert not page.exception, page.exception
    assert not page.title and not page.dataframe


def test_a_url_typed_in_the_sidebar_never_gets_the_servers_own_key(app, monkeypatch):
    """Team mode: Test connection against a URL an owner typed carries no key; against the
    server's own URL it carries the server's key."""
    import json

    from tests.support.openai_server import ChatServer, Reply

    def ok(body: dict) -> Reply:
        return Reply(content=json.dumps({"ok": True}))

    with ChatServer(ok) as own, ChatServer(ok) as typed:
        monkeypatch.setenv("RAGBENCH_LLM_BASE_URL", own.base_url)
        monkeypatch.setenv("RAGBENCH_LLM_MODEL", "m")
        monkeypatch.setenv("RAGBENCH_LLM_API_KEY", "sk-server-only")
        monkeypatch.setenv("RAGBENCH_TEAM_OWNERS", "owner@team.test")
        app.run()
        sign_in(app, "owner@team.test", "pw-app-test")
        app.text_input(key="llm_base_url").set_value(typed.base_url).run()
        app.button(key="llm_test").click().run()
        app.text_input(key="llm_base_url").set_value(own.base_url).run()
        app.button(key="llm_test").click().run()
    assert typed.requests and not any("sk-server-only" in (h or "") for h in typed.auth_headers)
    assert own.auth_headers and own.auth_headers[-1] == "Bearer sk-server-only"
