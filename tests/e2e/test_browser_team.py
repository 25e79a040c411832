"""Team mode in a real browser: a team server with a shared password, and three people in their
own browser contexts. A wrong password is refused and leaves no session; a viewer can read but
cannot start a job or delete; a member can start one but not delete; the audit log lists it all."""

from __future__ import annotations

import re

import pytest

from core.runs.audit import read_audit
from tests.e2e.conftest import no_exception, running_app, wait_idle
from tests.e2e.test_browser_walk import click, expect_text, go

pytestmark = pytest.mark.slow

PASSWORD = "team-password-e2e"
TEAM_ENV = {
    "RAGBENCH_TEAM_PASSWORD": PASSWORD,
    "RAGBENCH_TEAM_OWNERS": "owner@team.test",
    "RAGBENCH_TEAM_MEMBERS": "member@team.test",
}


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    data = tmp_path_factory.mktemp("team_data")
    with running_app(data, TEAM_ENV, script="serve.py") as url:  # as a team server runs
        yield url, data


@pytest.fixture
def browser(team):
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def tab_of(browser):
    """A new browser context (another person: own cookies, own session) and its page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    tab = context.new_page()
    tab.set_default_timeout(120_000)
    return tab


def sign_in(tab, url: str, email: str, password: str) -> None:
    go(tab, url)
    tab.get_by_label("Email").fill(email)
    tab.get_by_label("Team password").fill(password)
    click(tab, "^Sign in$")


def button(tab, name: str):
    return tab.get_by_role("button", name=re.compile(name)).first


def confirm_deletion(tab) -> str:
    """Open "Delete this run" for the selected run and type its id; return the id."""
    tab.get_by_text(re.compile("Delete this run")).first.click()
    box = tab.get_by_label(re.compile(r"^Type .+ to confirm$"))
    run_id = box.get_attribute("aria-label").split()[1]
    box.fill(run_id)
    box.press("Enter")
    wait_idle(tab)
    return run_id


def test_viewers_read_members_run_owners_delete_and_the_audit_log_has_it_all(team, browser):
    url, data = team

    # A wrong password: refused, and no session (a reload is back at the form, no pages).
    stranger = tab_of(browser)
    sign_in(stranger, url, "member@team.test", "not-the-password")
    expect_text(stranger, "Wrong email or password")
    go(stranger, url + "/documents")
    assert stranger.get_by_label("Team password").count() == 1
    assert stranger.get_by_text("Build a corpus").count() == 0
    # no page list either: before sign-in Streamlit would list (and serve) every script in pages/
    assert stranger.locator('[data-testid="stSidebarNav"]').count() == 0
    assert stranger.get_by_text("jobs ui").count() == 0
    no_exception(stranger)

    # A member builds the sample corpus and starts indexing (a background job).
    member = tab_of(browser)
    sign_in(member, url, "member@team.test", PASSWORD)
    expect_text(member, r"Signed in as member@team\.test \(member")
    go(member, url + "/documents")
    click(member, "Use the sample corpus")
    expect_text(member, r"1 document, 2\d\d chunks")
    click(member, "^Index into Chroma$")
    expect_text(member, r"chunks? added", timeout_s=600)
    no_exception(member)

    # A viewer (an email on no list) sees the member's run but cannot start anything.
    viewer = tab_of(browser)
    sign_in(viewer, url, "viewer@team.test", PASSWORD)
    expect_text(viewer, r"Signed in as viewer@team\.test \(viewer")
    go(viewer, url + "/documents")
    expect_text(viewer, r"Corpus run")
    assert button(viewer, "Use the sample corpus").is_disabled()
    assert button(viewer, "^Index into Chroma$").is_disabled()
    go(viewer, url + "/questions")
    assert button(viewer, "Load the sample question set").is_disabled()

    # Neither the viewer nor the member may delete; the owner may.
    corpus_id = next(
        e["run"] for e in read_audit(root=data) if e["action"] == "created" and "corpus" in e["run"]
    )
    for tab in (viewer, member):
        go(tab, url + "/runs")
        confirm_deletion(tab)
        assert button(tab, "^Delete$").is_disabled()
        no_exception(tab)
    owner = tab_of(browser)
    sign_in(owner, url, "owner@team.test", PASSWORD)
    go(owner, url + "/runs")
    expect_text(owner, r"Audit log \(\d+ latest event")
    doomed = confirm_deletion(owner)
    click(owner, "^Delete$")
    expect_text(owner, r"Deleted \d+ run\(s\)")
    no_exception(owner)

    # The audit log on disk (what the Runs page shows) names everyone and what they did.
    events = [(e["user"], e["action"], e["run"]) for e in read_audit(root=data)]
    assert ("member@team.test", "sign-in refused", "") in events
    assert ("member@team.test", "signed in", "") in events
    assert ("viewer@team.test", "signed in", "") in events
    assert ("member@team.test", "created", corpus_id) in events
    started = [e for e in events if e[1] == "started"]
    assert started and all(user == "member@team.test" for user, _, _ in started)
    assert not [e for e in events if e[1] in ("created", "started") and "viewer" in e[0]]
    deleted = [e for e in events if e[1] == "deleted"]
    assert ("owner@team.test", "deleted", doomed) in deleted
    assert all(user == "owner@team.test" for user, _, _ in deleted)
