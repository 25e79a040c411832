"""The team server as an attacker meets it: `streamlit run serve.py` on loopback, spoken to over
Streamlit's own websocket protocol (tests/support/st_client.py) the way a script does it, with
forged headers, copied cookies, uploads the page never asked for and parallel tries.

Two servers: one that trusts no proxy (every client here is this machine, whatever its
X-Forwarded-For says), and one told that this machine is its reverse proxy, where each test's
clients come from their own forwarded addresses and so never share a throttle bucket.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.runs.audit import read_audit
from tests.support.formulas import formula_qa_run, live_formulas
from tests.support.st_client import ROOT, StreamlitClient, free_port, served, sign_in

PASSWORD = "team-server-secret"
TEAM = {
    "RAGBENCH_TEAM_PASSWORD": PASSWORD,
    "RAGBENCH_TEAM_OWNERS": "owner@team.test",
    "RAGBENCH_TEAM_MEMBERS": "member@team.test",
    "RAGBENCH_SESSION_UPLOAD_MB": "1",
    "RAGBENCH_SIGNIN_WAIT_S": "60",  # no wait ends during a test, however slow the machine
}
SIGNED_IN = r"Signed in as \*\*{}\*\*"
WAIT = "Too many wrong tries: wait"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """A team server behind a reverse proxy on this machine (RAGBENCH_TRUSTED_PROXIES), with a
    question set of spreadsheet formulas already in its data directory."""
    data = tmp_path_factory.mktemp("proxied")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGBENCH_DATA_DIR", str(data))
        qa_id = formula_qa_run()
    with served(data, {**TEAM, "RAGBENCH_TRUSTED_PROXIES": "127.0.0.1"}) as url:
        yield url, data, qa_id


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    """A team server that trusts no proxy."""
    data = tmp_path_factory.mktemp("direct")
    with served(data, TEAM) as url:
        yield url, data


def at(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def test_no_upload_before_sign_in_a_session_holds_its_share_and_no_metrics(proxied):
    """Item 1 and the metrics: a session that has not signed in cannot PUT a file (main kept
    four 150 MB uploads in memory); a signed-in one holds at most its share."""
    url, _, _ = proxied
    with StreamlitClient(url, headers=at("10.0.1.1")) as stranger:
        assert stranger.run().has("sign in with your email")
        assert stranger.upload(b"x" * 1000) == 403
    member, page = sign_in(url, "member@team.test", PASSWORD, headers=at("10.0.1.2"))
    with member:
        assert page.has(SIGNED_IN.format("member@team.test"))
        assert member.upload(b"x" * 600_000) == 204
        assert member.upload(b"x" * 600_000) == 413  # 1 MB a session in this server
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "/_stcore/metrics", timeout=10)
    assert info.value.code == 404


def test_an_attacker_at_one_address_does_not_lock_a_member_out_at_another(proxied):
    """Item 2: main locked member@ out for everyone after 5 wrong tries."""
    url, data, _ = proxied
    for _ in range(8):
        client, page = sign_in(url, "member@team.test", "wrong", headers=at("10.0.2.66"))
        client.close()
    assert page.has(WAIT)
    member, page = sign_in(url, "member@team.test", PASSWORD, headers=at("10.0.2.7"))
    member.close()
    assert page.has(SIGNED_IN.format("member@team.test"))
    details = [e["detail"] for e in read_audit(root=data)]
    assert any("address 10.0.2.66" in d for d in details)  # the proxy's header, believed


def test_signing_out_kills_every_copy_of_the_cookie(proxied):
    """Item 5: main let the copied cookie sign in again for its remaining 12 hours."""
    url, _, _ = proxied
    first, page = sign_in(url, "member@team.test", PASSWORD, headers=at("10.0.3.1"))
    cookie = page.cookie("ragbench_team")
    assert cookie
    with StreamlitClient(url, cookies={"ragbench_team": cookie}, headers=at("10.0.3.2")) as copy:
        assert copy.run().has(SIGNED_IN.format("member@team.test"))
        with first:
            page = first.run()
            first.run({page.widgets["Sign out"][1]: True})
        assert copy.run().has("sign in with your email")  # the open session ends too
    with StreamlitClient(url, cookies={"ragbench_team": cookie}, headers=at("10.0.3.3")) as late:
        assert late.run().has("sign in with your email")


def test_a_download_is_audited_and_its_csv_runs_no_formula(proxied):
    """Item 4: main exported 30 live formula cells and recorded no download."""
    url, data, qa_id = proxied
    viewer, _ = sign_in(url, "viewer@team.test", PASSWORD, headers=at("10.0.4.1"))
    with viewer:
        page = viewer.go("questions")
        csv = viewer.download(page.downloads["CSV"])
    assert live_formulas(csv) == [] and b"'=HYPERLINK" in csv
    exported = [e for e in read_audit(root=data) if e["action"] == "exported"]
    assert [(e["user"], e["run"], e["detail"]) for e in exported] == [
        ("viewer@team.test", qa_id, "questions as csv")
    ]


def test_parallel_tries_are_throttled_and_logged_in_a_handful_of_lines(proxied):
    """Items 2 and 6: 30 parallel tries wrote 30 lines on main; now most wait unchecked and
    are counted in a few lines."""
    url, data, _ = proxied
    before = len(read_audit(root=data, limit=None))
    pages = []

    def one(i: int) -> None:
        client, page = sign_in(url, f"x{i}@team.test", "wrong", headers=at("10.0.5.9"))
        client.close()
        pages.append(page)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = read_audit(root=data, limit=None)
    lines = everything[: len(everything) - before]  # newest first: this test's lines
    checked = [e for e in lines if "wrong email or password" in e["detail"]]
    assert len(pages) == 30 and sum(p.has(WAIT) for p in pages) == 20
    assert len(checked) == 10  # the address's free tries; the other 20 waited unchecked
    assert len(lines) == 12, [e["detail"] for e in lines]  # + the 1st and 10th refused


def test_forged_forwarded_addresses_are_ignored_and_a_returning_owner_still_signs_in(direct):
    """Item 2: on main, rotating emails and X-Forwarded-For headers were never throttled, the
    log recorded the forged addresses, and 20 wrong tries from this machine locked out the
    owner's right password. Now the forged header is ignored, the flood waits, and a browser
    that signed in before (its device cookie) is let through."""
    url, data = direct
    owner, page = sign_in(url, "owner@team.test", PASSWORD)
    owner.close()
    device = page.cookie("ragbench_device")
    assert device and page.has(SIGNED_IN.format("owner@team.test"))
    for i in range(12):
        client, page = sign_in(url, f"x{i}@team.test", "wrong", headers=at(f"10.6.0.{i}"))
        client.close()
    assert page.has(WAIT)
    details = " ".join(e["detail"] for e in read_audit(root=data))
    assert not re.search(r"10\.6\.0\.\d", details) and "address 127.0.0.1" in details
    stranger, page = sign_in(url, "owner@team.test", PASSWORD)
    stranger.close()
    assert page.has(WAIT)  # a new browser from the flooded address waits like the flood
    back, page = sign_in(url, "owner@team.test", PASSWORD, cookies={"ragbench_device": device})
    back.close()
    assert page.has(SIGNED_IN.format("owner@team.test"))


@contextlib.contextmanager
def nginx_in_front(app_url: str, folder: Path) -> Iterator[str]:
    """docs/nginx-ragbench.conf as shipped, on a free loopback port without TLS (its
    certificate lines and its port-80 redirect left out), in front of `app_url`."""
    site = (ROOT / "docs" / "nginx-ragbench.conf").read_text()
    site = site.split("\nserver {\n    listen 80;")[0]
    port = free_port()
    site = site.replace("server 127.0.0.1:8501;", f"server {app_url.split('//')[1]};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    site = "\n".join(line for line in site.splitlines() if "ssl_certificate" not in line)
    conf = folder / "nginx.conf"
    conf.write_text(
        f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {folder}/body;\n"
        f"proxy_temp_path {folder}/proxy;\n{site}\n}}\n"
    )
    proc = subprocess.Popen(
        ["nginx", "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
        + ["-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) and time.monotonic() < deadline:
            assert proc.poll() is None, (folder / "error.log").read_text()
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def announced_size_answer(url: str, size: int) -> bytes:
    """The status line the server sends for an upload that announces `size` bytes."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"PUT /_stcore/upload_file/s/f HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {size}\r\nContent-Type: multipart/form-data\r\n\r\n".encode()
        )
        return sock.recv(200).split(b"\r\n")[0]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get)")
def test_the_shipped_nginx_config_overwrites_forwarded_addresses_and_holds_back_big_files(
    proxied, tmp_path
):
    """The README's reverse proxy, tested: the websocket works through it, a client's own
    X-Forwarded-For is replaced by its real address, metrics are closed and a file over the
    per-file limit is refused before its body is read."""
    url, data, _ = proxied
    with nginx_in_front(url, tmp_path) as front:
        member, page = sign_in(front, "member@team.test", PASSWORD, headers=at("10.0.7.7"))
        member.close()
        assert page.has(SIGNED_IN.format("member@team.test"))
        assert b" 413 " in announced_size_answer(front, 60 * 1024 * 1024)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(front + "/_stcore/metrics", timeout=10)
        assert info.value.code == 404
    sign_ins = [e for e in read_audit(root=data) if e["action"] == "signed in"]
    assert sign_ins[0]["detail"] == "team password, address 127.0.0.1"  # not 10.0.7.7
