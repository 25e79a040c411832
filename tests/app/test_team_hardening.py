"""The team server's sign-in and sidebar under attack, through the real entrypoint (AppTest):
no password oracle before the throttle, no look-alike identities, no server-side fetches for
members and viewers and no reply bodies from typed addresses, refused tries counted rather than
logged one by one, the data directory for owners only, and a per-file limit within the server's.
What AppTest cannot reach (cookies, headers, uploads) is in tests/integration/test_team_server.py.
"""

from __future__ import annotations

import pytest

from core.runs.actor import set_fallback
from core.runs.audit import audit_path, read_audit
from core.team.throttle import THROTTLE, Backoff

PASSWORD = "boss@corp.example"  # a team password that looks like an email
WRONG = "Wrong email or password, or this email may not sign in."


@pytest.fixture(autouse=True)
def team_env(monkeypatch):
    monkeypatch.setenv("RAGBENCH_TEAM_PASSWORD", PASSWORD)
    monkeypatch.setenv("RAGBENCH_TEAM_OWNERS", "owner@example.com")
    monkeypatch.setenv("RAGBENCH_TEAM_MEMBERS", "member@team.test")
    for var in ("RAGBENCH_LLM_BASE_URL", "RAGBENCH_LLM_API_KEY", "RAGBENCH_LLM_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    THROTTLE.clear()  # every AppTest comes from the same (unknown) address
    # Waits long enough that a slow test machine never sees one end between two tries.
    monkeypatch.setattr(THROTTLE, "address", Backoff(free=10, base_s=60, cap_s=120))
    monkeypatch.setattr(THROTTLE, "pair", Backoff(free=3, base_s=60, cap_s=300))
    yield
    THROTTLE.clear()
    set_fallback(None)


def sign_in(app, email: str, password: str):
    app.text_input(key="team_email").set_value(email)
    app.text_input(key="team_password").set_value(password)
    return app.button[0].click().run()


def errors(app) -> list[str]:
    return [e.value for e in app.error]


def test_the_email_box_holding_the_password_is_answered_like_any_wrong_try(app):
    """Item 7: nothing is compared before the throttle, and the password typed into the Email
    box gets the answer of a wrong password (it used to get its own)."""
    app.run()
    sign_in(app, PASSWORD, "a guess")
    assert errors(app) == [WRONG]
    sign_in(app, "someone@corp.example", "a guess")
    assert errors(app) == [WRONG]
    for i in range(12):  # enough wrong tries from this address to be made to wait
        sign_in(app, f"guess{i}@corp.example", "a guess")
    probe = errors(sign_in(app, PASSWORD, "a guess"))
    assert probe == errors(sign_in(app, "other@corp.example", "a guess"))
    assert probe[0].startswith("Too many wrong tries: wait")
    assert "team_actor" not in app.session_state
    assert PASSWORD not in audit_path().read_text()  # the password is never an identity


def test_a_look_alike_email_never_signs_in_and_a_full_width_one_is_the_real_one(app):
    """Item 8: a zero-width space after the owner's email is refused (it used to sign in as a
    viewer, logged as the owner); full-width letters are the same address (NFKC)."""
    app.run()
    sign_in(app, "owner@example.com\u200b", PASSWORD)
    assert "invisible character" in errors(app)[0] and "U+200B" in errors(app)[0]
    assert "team_actor" not in app.session_state
    sign_in(app, "\u043ewner@example.com", PASSWORD)  # a Cyrillic o
    assert "outside plain ASCII" in errors(app)[0]
    assert [e["user"] for e in read_audit()] == ["", ""]  # refused, nobody named
    sign_in(app, "ｏｗｎｅｒ@example.com", PASSWORD)
    assert app.session_state["team_actor"].name == "owner@example.com"
    assert app.session_state["team_actor"].role == "owner"


def test_refused_tries_while_waiting_are_counted_not_logged_one_by_one(app):
    """Item 6: 40 tries for one email write a handful of lines (it used to be 40)."""
    app.run()
    for _ in range(40):
        sign_in(app, "member@team.test", "wrong")
    events = read_audit()
    assert len(events) <= 6, [e["detail"] for e in events]
    assert any("10 refused while waiting" in e["detail"] for e in events)
    assert errors(app)[0].startswith("Too many wrong tries: wait")


def test_only_an_owner_points_the_server_elsewhere_and_sees_no_reply_body(app, monkeypatch):
    """Item 3: a viewer's forged base URL is never fetched (the field is disabled and ignored);
    an owner's typed URL is fetched but its reply body never shown; both tests are audited."""
    from tests.support.openai_server import ChatServer, Reply

    def internal(body: dict) -> Reply:
        return Reply(status=200, raw_body='{"admin": "INTERNAL-ONLY-DATA"}')

    with ChatServer(internal) as admin:
        app.run()
        sign_in(app, "viewer@team.test", PASSWORD)
        app.radio(key="llm_backend").set_value("openai").run()
        assert app.text_input(key="llm_base_url").disabled
        app.session_state["llm_base_url"] = admin.base_url  # what a websocket client can send
        app.button(key="llm_test").click().run()
        assert admin.requests == []  # the server never fetched the viewer's address

        app.session_state["team_actor"] = None
        del app.session_state["team_actor"]
        app.run()
        sign_in(app, "owner@example.com", PASSWORD)
        app.radio(key="llm_backend").set_value("openai").run()
        app.text_input(key="llm_base_url").set_value(admin.base_url).run()
        app.button(key="llm_test").click().run()
        assert len(admin.requests) == 1
    shown = " ".join(e.value for e in app.error) + " ".join(c.value for c in app.code)
    assert "is not a chat completion" in shown and "INTERNAL-ONLY-DATA" not in shown
    tests = [e for e in read_audit() if e["action"] == "tested the LLM connection"]
    assert [(e["user"], e["detail"]) for e in tests] == [
        ("owner@example.com", admin.base_url),
        ("viewer@team.test", ""),  # the viewer's test went to the server's own (unset) URL
    ]


def test_the_data_directory_is_shown_to_owners_only(app, data_root):
    app.run()
    sign_in(app, "viewer@team.test", PASSWORD)
    assert not [c.value for c in app.sidebar.caption if str(data_root) in c.value]
    app.session_state["team_actor"] = None
    del app.session_state["team_actor"]
    app.run()
    sign_in(app, "owner@example.com", PASSWORD)
    assert [c.value for c in app.sidebar.caption if str(data_root) in c.value]


def test_the_per_file_limit_is_never_above_what_the_server_takes(monkeypatch):
    """Item 1: the server refuses (and holds in memory) no more than the app allows per file."""
    import tomllib
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import page_path

    monkeypatch.delenv("RAGBENCH_TEAM_PASSWORD")
    root = Path(__file__).resolve().parents[2]
    server_mb = tomllib.loads((root / ".streamlit" / "config.toml").read_text())["server"][
        "maxUploadSize"
    ]
    page = AppTest.from_file(page_path("documents.py"), default_timeout=60).run()
    assert not page.exception, page.exception
    limit = page.number_input(key="docs_max_mb")
    assert limit.max == server_mb == 50 and limit.value <= server_mb
