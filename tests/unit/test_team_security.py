"""Team server hardening, headless: look-alike emails, the sign-in throttle, forwarded
addresses, server-side sessions, the audit log's rotation and filter, and CSV that opens as text
in a spreadsheet (the CLI's export included). The server-level checks are in
tests/integration/test_team_server.py."""

from __future__ import annotations

import io
import json
import threading

import pytest

from core.errors import ConfigError, InputError
from core.team import TeamConfig, normalise_email, team_config
from core.team.address import client_address
from core.team.sessions import (
    check_session,
    cookie_session,
    device_id,
    device_token,
    end_session,
    start_session,
)
from core.team.throttle import Backoff, SignInThrottle, worth_a_line
from tests.support.formulas import PAYLOADS, formula_qa_run, live_formulas

CONFIG = TeamConfig(mode="password", password="pw", members=frozenset({"me@team.test"}))


# --- 8. look-alike identities ---------------------------------------------------------------


def test_an_email_is_normalised_and_look_alikes_are_refused_with_the_character_named():
    assert normalise_email("  Ow@Team.Test ") == "ow@team.test"
    assert normalise_email("ｏｗ@team.test") == "ow@team.test"  # full-width letters: NFKC
    with pytest.raises(InputError, match="invisible") as info:
        normalise_email("owner@example.com\u200b")  # a zero-width space
    assert "U+200B" in str(info.value) and "Fix:" in str(info.value)
    with pytest.raises(InputError, match="outside plain ASCII") as info:
        normalise_email("\u043ewner@example.com")  # a Cyrillic o
    assert "CYRILLIC" in str(info.value)
    with pytest.raises(InputError, match="not an email"):
        normalise_email("correct horse battery staple")


def test_a_look_alike_gets_no_role_and_a_role_list_cannot_hold_one(monkeypatch):
    config = TeamConfig(mode="password", password="pw", owners=frozenset({"owner@example.com"}))
    assert config.role_for("owner@example.com\u200b") is None
    assert config.role_for("OWNER@example.com") == "owner"
    monkeypatch.setenv("RAGBENCH_TEAM_PASSWORD", "pw")
    monkeypatch.setenv("RAGBENCH_TEAM_OWNERS", "owner@example.com\u2060")
    with pytest.raises(ConfigError, match="cannot be an identity"):
        team_config({})


# --- 2. the throttle: growing waits, by address and email, no lock-out -----------------------


def test_waits_grow_after_the_free_tries_and_are_forgotten():
    backoff = Backoff(free=2, base_s=1.0, cap_s=8.0, forget_s=100.0)
    throttle = SignInThrottle(address=backoff, pair=Backoff(free=99, base_s=1, cap_s=1))
    waits = []
    now = 0.0
    for _ in range(7):
        attempt = throttle.attempt("x@t", "1.1.1.1", now=now)
        assert attempt.wait_s == 0  # each try comes once the last wait is over
        waits.append(backoff.wait_s("1.1.1.1", now))
        now += waits[-1]
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling up to the cap, never locked
    assert throttle.attempt("x@t", "1.1.1.1", now=now + 200).wait_s == 0  # forgotten


def test_an_attacker_slows_only_their_own_address_and_a_known_browser_passes():
    throttle = SignInThrottle()
    now = 0.0
    for i in range(40):  # a flood at one address, each try as soon as it is let through
        email = "me@team.test" if i % 2 else f"x{i}@t"
        while wait := throttle.attempt(email, "6.6.6.6", now=now).wait_s:
            now += wait
    assert throttle.attempt("me@team.test", "6.6.6.6", now=now).wait_s >= 60  # slowed down
    assert throttle.attempt("me@team.test", "7.7.7.7", now=now).wait_s == 0  # another address
    device = device_token("me@team.test", CONFIG)
    known = device_id(device, "me@team.test", CONFIG)
    assert known and throttle.attempt("me@team.test", "6.6.6.6", known, now=now).wait_s == 0
    assert device_id(device, "other@team.test", CONFIG) == ""  # only for its own email
    assert device_id(device + "0", "me@team.test", CONFIG) == ""  # forged


def test_parallel_tries_cannot_slip_past_the_free_ones():
    throttle = SignInThrottle(pair=Backoff(free=3, base_s=60, cap_s=60))
    checked = []
    barrier = threading.Barrier(40)

    def one() -> None:
        barrier.wait()
        if throttle.attempt("me@team.test", "6.6.6.6").wait_s == 0:
            checked.append(1)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(checked) == 3  # the free tries; every other one waits


def test_refused_tries_get_a_line_the_first_time_and_at_each_power_of_ten():
    assert [n for n in range(1, 1001) if worth_a_line(n)] == [1, 10, 100, 1000]


# --- 2. where a try comes from --------------------------------------------------------------


def test_a_forwarded_address_is_believed_only_from_a_configured_proxy():
    # The server (uvicorn) took the header from this machine and reports what it named.
    assert client_address("10.9.9.9", "10.9.9.9", []) == "127.0.0.1"
    assert client_address("10.9.9.9", "10.9.9.9", ["127.0.0.1"]) == "10.9.9.9"
    assert client_address("10.9.9.9", "1.2.3.4, 10.9.9.9", ["127.0.0.1"]) == "10.9.9.9"
    assert client_address("1.2.3.4", "1.2.3.4, 10.0.0.2", ["127.0.0.1", "10.0.0.0/8"]) == "1.2.3.4"
    assert client_address(None, "", []) == "127.0.0.1"
    assert client_address("8.8.8.8", "10.9.9.9", []) == "8.8.8.8"  # a direct client's header
    with pytest.raises(ConfigError, match="not an IP address"):
        team_config({"ragbench": {"team": {"password": "x", "trusted_proxies": ["proxy.local"]}}})


# --- 5. server-side sessions -----------------------------------------------------------------


def test_signing_out_ends_every_copy_of_the_cookie_and_a_role_change_ends_the_session(data_root):
    session, cookie = start_session("me@team.test", "member", CONFIG)
    assert cookie_session(cookie, CONFIG).email == "me@team.test"
    end_session(session.id)
    assert cookie_session(cookie, CONFIG) is None  # a copy made before the sign-out is dead
    session, cookie = start_session("me@team.test", "member", CONFIG)
    demoted = TeamConfig(mode="password", password="pw")  # no longer on the member list
    assert check_session(session.id, demoted) is None
    assert check_session(session.id, CONFIG) is None  # the record went with the change
    assert not list((data_root / "team_sessions").glob("*.json"))


def test_a_session_record_holds_no_usable_id_and_expired_ones_are_swept(data_root):
    old, _ = start_session("me@team.test", "member", CONFIG, now=0)
    new, _ = start_session("me@team.test", "member", CONFIG)
    names = [p.read_text() + p.name for p in (data_root / "team_sessions").glob("*.json")]
    assert len(names) == 1 and new.id not in names[0]  # the old one swept, the id not on disk
    assert check_session(old.id, CONFIG) is None and check_session(new.id, CONFIG)


# --- 6. the audit log: rotation and kinds -------------------------------------------------


def test_the_audit_log_rotates_by_size_keeps_the_old_files_and_filters_by_kind(
    data_root, monkeypatch
):
    from core.runs.audit import audit_files, read_audit, record

    monkeypatch.setenv("RAGBENCH_AUDIT_MAX_MB", "0.001")  # about 1 KB a file
    for i in range(30):
        record("sign-in refused" if i % 3 else "created", f"run-{i}")
    files = audit_files()
    assert len(files) > 3 and all(f.stat().st_size <= 1100 for f in files)
    events = read_audit(limit=None)
    assert [e["run"] for e in events] == [f"run-{i}" for i in reversed(range(30))]  # none lost
    created = read_audit(limit=5, actions={"created"})
    assert [e["run"] for e in created] == ["run-27", "run-24", "run-21", "run-18", "run-15"]


# --- 4. CSV that a spreadsheet opens as text -----------------------------------------------


def test_formula_cells_are_neutralised_and_numbers_left_alone():
    import pandas as pd

    from core.spreadsheet import csv_bytes, safe_csv_bytes

    frame = pd.DataFrame({"text": [*PAYLOADS, "-0.25", "plain"], "n": range(8)})
    data = csv_bytes(frame)
    assert live_formulas(data) == []
    assert "'=HYPERLINK" in data.decode()
    assert pd.read_csv(io.BytesIO(data))["text"].iloc[6] == "-0.25"  # a number stays as it was
    raw = frame.to_csv(index=False).encode()
    assert len(live_formulas(raw)) == len(PAYLOADS)
    assert live_formulas(safe_csv_bytes(raw)) == []


def test_the_questions_export_and_the_cli_export_write_no_live_formula(data_root, tmp_path):
    from core.cli.main import main
    from core.questions.dataset import load_qa
    from core.questions.exporting import export_qa
    from core.runs.audit import read_audit

    qa_id = formula_qa_run()
    assert live_formulas(export_qa(load_qa(qa_id), {}, "csv")) == []
    out = tmp_path / "q.csv"
    assert main(["--quiet", "export", qa_id, "--format", "csv", "-o", str(out)]) == 0
    assert live_formulas(out.read_bytes()) == []
    assert main(["export", qa_id, "--format", "jsonl", "-o", str(tmp_path / "q.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["anchor"] for r in rows] == list(PAYLOADS)  # JSON keeps the text as it is
    exported = [e for e in read_audit() if e["action"] == "exported"]
    assert [e["detail"] for e in exported] == ["questions as jsonl (CLI)", "questions as csv (CLI)"]
    assert main(["export", qa_id, "--format", "xlsx", "-o", str(out)]) == 2  # usage error


def test_a_run_file_leaves_the_app_with_no_live_formula(tmp_path):
    from core.report.export import _artifact_bytes
    from core.spreadsheet import export_bytes

    path = tmp_path / "metrics.csv"  # a run's CSV as saved: the values as computed
    path.write_text("retriever,ndcg@10\n" + "".join(f'"{p}",-0.1\n' for p in PAYLOADS))
    assert len(live_formulas(path.read_bytes())) == len(PAYLOADS)
    for data in (_artifact_bytes(path), export_bytes(path)):  # the report zip, a download
        assert live_formulas(data) == [] and data.count(b"-0.1") == len(PAYLOADS)
