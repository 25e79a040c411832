"""Team mode: sign-in configuration, roles enforced where runs are made, stopped and deleted, the
append-only audit log, and the upload quota."""

from __future__ import annotations

import json
import os

import pytest

from core.errors import AccessError, ConfigError, InputError
from core.runs.actor import Actor, acting, acting_as, actor_env, require
from core.runs.audit import audit_path, read_audit, record
from core.runs.folders import create_run, list_runs, load_run
from core.team import (
    TeamConfig,
    exposure_warning,
    password_matches,
    team_config,
)

VIEWER = Actor("vi@team.test", "viewer")
MEMBER = Actor("me@team.test", "member")
OWNER = Actor("ow@team.test", "owner")


@pytest.fixture(autouse=True)
def no_team_env(monkeypatch):
    for var in (
        "RAGBENCH_TEAM_PASSWORD",
        "RAGBENCH_TEAM_OWNERS",
        "RAGBENCH_TEAM_MEMBERS",
        "RAGBENCH_TEAM_VIEWERS",
        "RAGBENCH_TEAM_DEFAULT_ROLE",
        "RAGBENCH_UPLOAD_QUOTA_MB",
        "RAGBENCH_ACTOR",
    ):
        monkeypatch.delenv(var, raising=False)


def test_sign_in_is_off_by_default_and_the_local_user_owns_everything():
    assert team_config({}).mode == "off"
    assert acting().role == "owner" and acting().name.endswith("(local)")


def test_password_mode_from_the_environment_with_roles_from_email_lists(monkeypatch):
    monkeypatch.setenv("RAGBENCH_TEAM_PASSWORD", "correct horse")
    monkeypatch.setenv("RAGBENCH_TEAM_OWNERS", "Ow@Team.test")
    monkeypatch.setenv("RAGBENCH_TEAM_MEMBERS", "me@team.test, other@team.test")
    config = team_config({})
    assert config.mode == "password"
    assert "correct horse" not in repr(config)  # never printed
    assert config.role_for("ow@team.test") == "owner"
    assert config.role_for(" ME@team.test ") == "member"
    assert config.role_for("someone@else.test") == "viewer"


def test_oidc_mode_when_secrets_have_an_auth_section_and_unlisted_people_can_be_refused():
    secrets = {
        "auth": {"client_id": "x", "server_metadata_url": "https://idp/.well-known"},
        "ragbench": {"team": {"owners": ["ow@team.test"], "default_role": "none"}},
    }
    config = team_config(secrets)
    assert config.mode == "oidc"
    assert config.role_for("ow@team.test") == "owner"
    assert config.role_for("stranger@else.test") is None


def test_a_bad_team_configuration_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="default role"):
        TeamConfig(mode="password", password="x", default_role="admin")
    with pytest.raises(ConfigError, match="needs a password"):
        TeamConfig(mode="password")


def test_password_is_compared_in_constant_time(monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert password_matches("s3cret", "s3cret")
    assert not password_matches("s3cre", "s3cret")
    assert not password_matches("", "")  # no password configured: nobody gets in
    assert all(len(a) == len(b) == 32 for a, b in calls) and len(calls) == 2


def test_an_open_address_without_sign_in_is_warned_about():
    off = TeamConfig()
    assert "anyone who reaches the port" in exposure_warning("0.0.0.0", off)
    assert "anyone who reaches the port" in exposure_warning("", off)  # every address
    assert exposure_warning("127.0.0.1", off) is None
    assert exposure_warning("localhost", off) is None
    assert exposure_warning("0.0.0.0", TeamConfig(mode="password", password="x")) is None


def test_roles_allow_what_the_issue_says():
    assert [VIEWER.can(a) for a in ("read", "export", "run", "stop", "delete")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert MEMBER.can("run") and MEMBER.can("stop") and not MEMBER.can("delete")
    assert OWNER.can("delete")


def test_a_viewer_cannot_make_a_run_and_no_folder_is_left(data_root):
    with acting_as(VIEWER), pytest.raises(AccessError, match="viewer and cannot run") as info:
        create_run("corpus", name="nope")
    assert "ask an owner" in str(info.value)
    assert list_runs() == []


def test_every_run_records_who_made_it_and_the_audit_log_says_so(data_root):
    with acting_as(MEMBER):
        run = create_run("corpus", name="by a member")
    assert load_run(run.id).manifest.created_by == "me@team.test"
    (event,) = read_audit()
    assert (event["user"], event["role"], event["action"], event["run"]) == (
        "me@team.test",
        "member",
        "created",
        run.id,
    )


def test_only_an_owner_deletes_and_each_deleted_run_is_recorded(data_root):
    from core.deletion import delete_with_dependants

    parent = create_run("corpus", name="parent")
    child = create_run("qa", name="child", parents={"corpus": parent.id})
    with acting_as(MEMBER), pytest.raises(AccessError, match="cannot delete"):
        delete_with_dependants(parent.id)
    assert {r.id for r in list_runs()} == {parent.id, child.id}
    with acting_as(OWNER):
        delete_with_dependants(parent.id)
    deleted = [(e["user"], e["run"]) for e in read_audit() if e["action"] == "deleted"]
    assert deleted == [("ow@team.test", parent.id), ("ow@team.test", child.id)]


def test_a_viewer_cannot_stop_a_job_and_a_member_can(data_root):
    from core.runs.jobs import STOP_FILE, request_stop

    run = create_run("retrieval_eval", name="running")
    with acting_as(VIEWER), pytest.raises(AccessError):
        request_stop(run)
    assert not run.artifact(STOP_FILE).exists()
    with acting_as(MEMBER):
        request_stop(run)
    assert run.artifact(STOP_FILE).exists()
    assert read_audit()[0]["action"] == "stopped" and read_audit()[0]["user"] == MEMBER.name


def test_a_job_acts_for_the_user_who_started_it(monkeypatch):
    with acting_as(MEMBER):
        env = actor_env()
    monkeypatch.setenv("RAGBENCH_ACTOR", env["RAGBENCH_ACTOR"])
    assert acting() == MEMBER
    assert require("run") == MEMBER


def test_the_audit_log_survives_a_torn_line_and_is_flushed_to_disk(data_root, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    record("started", "run-a")
    with audit_path().open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"time": "2026-11-30T10:00:00", "user": "x", "act')
    record("stopped", "run-a")
    assert [e["action"] for e in read_audit()] == ["stopped", "started"]  # the torn one skipped
    assert len(synced) == 2
    lines = audit_path().read_bytes().splitlines()
    assert json.loads(lines[-1])["action"] == "stopped"


def test_the_cache_is_cleared_only_by_an_owner_and_recorded(data_root):
    from core.embedding_cache import clear_data_dir_cache

    with acting_as(MEMBER), pytest.raises(AccessError):
        clear_data_dir_cache()
    with acting_as(OWNER):
        clear_data_dir_cache()
    assert read_audit()[0]["action"] == "cleared the embedding cache"


def test_uploads_over_the_file_limit_are_not_read_and_the_quota_counts_stored_files(data_root):
    from core.documents.quota import check_uploads
    from core.documents.stage import UploadedFile, build_corpus

    check = check_uploads([("a.txt", 10), ("big.pdf", 5000)], max_bytes=1000)
    assert check.accepted == ["a.txt"] and "per-file limit" in check.refused["big.pdf"]
    text = b"A paragraph about mirrors and releases, long enough to be a chunk of its own.\n" * 20
    with acting_as(MEMBER):
        build_corpus([UploadedFile("m.txt", text)])
    stored = len(text)
    ok = check_uploads(
        [("b.txt", 100)], max_bytes=10**6, quota_bytes=stored + 100, user=MEMBER.name
    )
    assert ok.accepted == ["b.txt"]
    with pytest.raises(InputError, match="over the upload quota") as info:
        check_uploads([("b.txt", 101)], max_bytes=10**6, quota_bytes=stored + 100, user=MEMBER.name)
    assert "already stored" in str(info.value)
    other = check_uploads([("b.txt", 101)], max_bytes=10**6, quota_bytes=stored + 100, user="x@y")
    assert other.accepted == ["b.txt"]  # the quota is per user


def test_the_sign_in_cookie_is_signed_expires_and_dies_with_a_password_change(data_root):
    import base64

    from core.team.sessions import SESSION_TTL_S, cookie_session, start_session

    config = TeamConfig(mode="password", password="one")
    session, token = start_session("me@team.test", "viewer", config, now=1000)
    assert cookie_session(token, config, now=1001).email == "me@team.test"
    assert cookie_session(token, config, now=1000 + SESSION_TTL_S + 1) is None  # expired
    session, token = start_session("me@team.test", "viewer", config, now=1000)
    assert cookie_session(token, TeamConfig(mode="password", password="two"), now=1001) is None
    session, token = start_session("me@team.test", "viewer", config, now=1000)
    encoded, signature = token.rsplit(".", 1)
    forged = base64.urlsafe_b64encode(b"another-id|9999999999").decode() + "." + signature
    assert cookie_session(forged, config, now=1001) is None  # another id, the same signature
    assert cookie_session("garbage", config) is None and cookie_session("a.b", config) is None
    assert "one" not in token and "me@team.test" not in base64.urlsafe_b64decode(encoded).decode()
    secret = data_root / ".team_secret"
    assert secret.stat().st_mode & 0o077 == 0  # readable by the app's user only


def test_the_servers_own_key_goes_only_to_the_servers_own_address():
    from core.team import held_secret

    url = "http://llm.internal:8000/v1"
    assert held_secret("", "sk-server", url + "/", url, team=True) == "sk-server"
    assert held_secret("", "sk-server", "https://attacker.example/v1", url, team=True) == ""
    assert held_secret("mine", "sk-server", "https://other/v1", url, team=True) == "mine"
    assert held_secret("", "sk-server", "https://other/v1", url, team=False) == "sk-server"


def test_oidc_refuses_the_unlisted_unless_told_otherwise():
    secrets = {"auth": {"client_id": "x"}, "ragbench": {"team": {"owners": ["ow@team.test"]}}}
    assert team_config(secrets).role_for("anyone@gmail.com") is None
    secrets["ragbench"]["team"]["default_role"] = "viewer"
    assert team_config(secrets).role_for("anyone@gmail.com") == "viewer"


def test_only_email_addresses_sign_in_and_an_address_has_its_own_limit():
    from core.team import looks_like_email
    from core.team.throttle import THROTTLE

    assert looks_like_email("me@team.test")
    assert not looks_like_email("correct horse battery")  # a password typed in the wrong box
    assert not looks_like_email("a" * 250 + "@x.io")
    assert THROTTLE.address.free > THROTTLE.pair.free  # many people behind one address


def test_a_job_whose_process_never_said_its_pid_is_found_dead(data_root):
    import time

    from core.runs.jobs import DIED_MESSAGE, NO_PID_AFTER_S, job_status

    run = create_run("index", name="never started")
    run.set_status(
        "running", pid=None, job_module="core.documents.index_job", job_started_at=time.time()
    )
    assert job_status(run).status == "running"  # just launched: give it time
    run.set_status("running", job_started_at=time.time() - NO_PID_AFTER_S - 1)
    status = job_status(run)
    assert status.status == "failed" and load_run(run.id).manifest.error == DIED_MESSAGE


def test_copies_of_the_same_files_count_once_in_the_quota(data_root):
    from core.documents.quota import stored_bytes
    from core.documents.stage import UploadedFile, add_documents, build_corpus

    one = b"The first document, about mirrors and releases, long enough for a chunk.\n" * 20
    two = b"The second document, about security support and stable releases, for a chunk.\n" * 20
    with acting_as(MEMBER):
        first = build_corpus([UploadedFile("one.txt", one)]).run
        add_documents(first.id, [UploadedFile("two.txt", two)])  # a new run: one.txt copied
    assert stored_bytes(MEMBER.name) == len(one) + len(two)


def test_a_viewer_cannot_push_a_model_to_the_hub(data_root):
    from core.finetune.model_card import push_to_hub

    run = create_run("model", name="tuned")
    with acting_as(VIEWER), pytest.raises(AccessError, match="push"):
        push_to_hub(run, "org/model", "hf_token")


def test_a_copied_model_folder_is_another_model_even_with_the_same_times(tmp_path):
    import shutil

    from core.deferred_model import folder_fingerprint

    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights one")
    before = folder_fingerprint(folder)
    (folder / "model.safetensors").rename(tmp_path / "old")
    shutil.copy2(tmp_path / "old", folder / "model.safetensors")  # same bytes, size, mtime
    assert folder_fingerprint(folder) != before  # a replaced file is never taken for the old one
