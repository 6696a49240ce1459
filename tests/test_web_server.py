"""The web side as deployed: `newsroom serve` in its own process on a real port, spoken to over
HTTP; and its refusals to start, each one clear line."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from select import select as wait_for_sockets

import httpx
import pytest
from sqlalchemy import select

from newsroom.database import transaction
from newsroom.models import Subscription, utcnow
from newsroom.people import subscribers
from newsroom.site import Site
from tests.conftest import Run
from tests.smtpserver import TestSMTPServer
from tests.webserver import Server, start


@pytest.fixture
def server(site_dir: Path, smtp_server: TestSMTPServer, tmp_path: Path) -> Iterator[Server]:
    running = start(site_dir, tmp_path / "serve.log")
    yield running
    running.stop()


def test_subscribe_confirm_and_one_click_over_http(
    server: Server, site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        home = browser.get("/")
        assert home.status_code == 200
        assert home.headers["x-content-type-options"] == "nosniff"
        assert "server" not in home.headers
        token = re.search(r'name="form_token" value="([^"]+)"', home.text)
        assert token
        answer = browser.post(
            "/subscribe",
            data={"form_token": token.group(1), "email": "ann@example.org", "lists": "all-members"},
        )
        assert answer.status_code == 200 and "Check your inbox" in answer.text
    (message,) = smtp_server.wait_for("ann@example.org")  # sent after the answer
    text = message.body()
    confirm = re.search(r"http://localhost:8000/confirm/(\S+)", text)
    assert confirm
    confirm_path = f"/confirm/{confirm.group(1)}"
    assert httpx.post(server.url + confirm_path, timeout=10).status_code == 200

    site = Site.open(site_dir)
    try:
        with transaction(site.engine) as session:
            (sub,) = session.scalars(select(Subscription)).all()
            assert sub.status == "confirmed"
        unsubscribe = subscribers.unsubscribe_token(
            site, sub.subscriber_id, "ann@example.org", None, now=sub.updated_at
        )
        # RFC 8058: a bare POST from the mail provider, no cookie, no redirect followed
        one_click = httpx.post(
            f"{server.url}/unsubscribe/{unsubscribe}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert one_click.status_code == 200 and not one_click.is_redirect
        with transaction(site.engine) as session:
            assert session.scalars(select(Subscription.status)).all() == ["unsubscribed"]
    finally:
        site.close()

    log = server.stop()
    assert f"on {server.url} (Ctrl-C to stop)" in log  # where to point the browser
    assert "POST /unsubscribe/[token]" in log and "POST /confirm/[token]" in log
    assert unsubscribe not in log and confirm.group(1) not in log
    assert unsubscribe.split(".")[1][:20] not in log
    access = [line for line in log.splitlines() if '"POST ' in line or '"GET ' in line]
    assert access and all(line.split()[1] == "-" for line in access), access  # no reader's IP
    assert not any("127.0.0.1" in line for line in access)


def test_answers_on_a_kept_alive_connection_do_not_wait_for_delayed_acks(server: Server) -> None:
    """Each answer is two writes (head, body); without TCP_NODELAY on the accepted sockets the
    second waits for the client's delayed ACK, about 40 ms a request (it happened once, when
    `serve` began making its own listening socket)."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/healthz")
        started = time.monotonic()
        for _ in range(20):
            assert client.get("/healthz").status_code == 200
        took = time.monotonic() - started
    assert took < 0.4, f"20 requests took {took:.2f} s"


def test_a_slow_relay_holds_up_no_one_click_unsubscribe(
    server: Server, site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    """A subscribe's confirmation email waits for the relay in a worker thread (after the
    answer); one-click unsubscribes, written in the event loop, are answered meanwhile."""
    site = Site.open(site_dir)
    try:
        subscribers.add(site, "bob@example.org", ["all-members"], now=utcnow())
        with transaction(site.engine) as session:
            bob = session.scalars(select(Subscription.subscriber_id)).one()
        token = subscribers.unsubscribe_token(site, bob, "bob@example.org", None, now=utcnow())
    finally:
        site.close()
    smtp_server.reset()  # forget bob's confirmation email
    smtp_server.stall("DATA", 4.0)
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        form = re.search(r'name="form_token" value="([^"]+)"', browser.get("/").text)
        assert form
        data = {"form_token": form.group(1), "email": "ann@example.org", "lists": "all-members"}
        with ThreadPoolExecutor(1) as pool:
            subscribing = pool.submit(browser.post, "/subscribe", data=data)
            deadline = time.monotonic() + 5
            while not any(c.startswith("DATA") for c in smtp_server.commands):
                assert time.monotonic() < deadline, smtp_server.commands
                time.sleep(0.02)
            started = time.monotonic()
            one_click = httpx.post(
                f"{server.url}/unsubscribe/{token}",
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=10,
            )
            waited = time.monotonic() - started
            assert smtp_server.messages == []  # the relay is still stalling
            assert one_click.status_code == 200 and waited < 1.0, waited
            assert subscribing.result().status_code == 200
        assert smtp_server.wait_for("ann@example.org")


def raw_request(server: Server, head: str, body: bytes = b"") -> bytes:
    """One request written to the socket as given (no client library to tidy the path up);
    returns the answer's head."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
    return answer


def chunked_post(server: Server, path: str, total: int) -> bytes:
    """POST TOTAL bytes to PATH as a chunked body (RFC 9112 section 7.1: no Content-Length),
    stopping when the server answers or hangs up; returns the answer's head."""
    port = int(server.url.rsplit(":", 1)[1])
    piece = b"%x\r\n%s\r\n" % (CHUNK, b"a" * CHUNK)
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        )
        try:
            for _ in range(total // CHUNK):
                if wait_for_sockets([sock], [], [], 0)[0]:
                    break  # answered already: the rest would not be read
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it hung up on the rest of the body; its answer may be waiting
        try:
            while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
                answer += data
        except ConnectionResetError:
            pass
    return answer


CHUNK = 64 * 1024


def resident_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found, status
    return int(found.group(1))


def test_a_chunked_body_over_the_limit_is_refused_on_every_route(server: Server) -> None:
    """A chunked body announces no length: the 64 KB limit holds on the bytes read. One 200 MB
    POST used to be read whole into memory (the server grew to 514 MB); now every route answers
    413 after the first 64 KB and hangs up, and the server's memory stays where it was."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the server's memory from /proc")
    routes = ["/subscribe", "/confirm/x.y.z", "/unsubscribe/anything", "/preferences/x.y.z"]
    chunked_post(server, "/unsubscribe/warm-up", 4 * CHUNK)
    before = resident_kb(server.process.pid)
    for path in routes:
        answer = chunked_post(server, path, 32 * 1024 * 1024)
        assert answer.startswith(b"HTTP/1.1 413 "), (path, answer)
        assert b"connection: close" in answer.lower()
    grown = resident_kb(server.process.pid) - before
    assert grown < 16 * 1024, f"the server grew by {grown} kB"
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_a_chunked_one_click_within_the_limit_unsubscribes(server: Server, site_dir: Path) -> None:
    site = Site.open(site_dir)
    try:
        subscribers.add(site, "bob@example.org", ["all-members"], now=utcnow())
        with transaction(site.engine) as session:
            bob = session.scalars(select(Subscription.subscriber_id)).one()
        token = subscribers.unsubscribe_token(site, bob, "bob@example.org", None, now=utcnow())
    finally:
        site.close()
    body = b"List-Unsubscribe=One-Click"
    answer = raw_request(
        server,
        f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\n",
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_tokens_stay_out_of_the_access_log_however_the_path_is_spelled(server: Server) -> None:
    token = "abc123.eyJzIjoxfQ.SIGNATUREsignature0123456789"
    for path in (
        f"/UNSUBSCRIBE/{token}",
        f"/Confirm/{token}",
        f"/%75nsubscribe/{token}",
        f"/preferences%2F{token}",
        f"/?next=%2Fconfirm%2F{token}",
    ):
        raw_request(server, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    log = server.stop()
    assert log.count("[token]") == 5, log
    assert "SIGNATURE" not in log and "eyJzIjoxfQ" not in log, log


def test_serve_refuses_to_start_without_a_secret_key(
    cli: Run, site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (site_dir / ".env").unlink()
    monkeypatch.delenv("NEWSROOM_SECRET_KEY")
    result = cli("serve", "--port", "1")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no secret key: set NEWSROOM_SECRET_KEY")
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_serve_says_in_one_line_why_it_cannot_listen(cli: Run) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cases = {
            ("--port", str(port)): f"Error: cannot listen on 127.0.0.1:{port}: Address already "
            "in use; another server is using that port: choose another with --port or [web] port",
            ("--host", "no.such.host.invalid"): "Error: cannot listen on no.such.host.invalid:",
            ("--host", "192.0.2.55"): "this machine has no such address: try 127.0.0.1 or 0.0.0.0",
        }
        for args, message in cases.items():
            result = cli("serve", *args)
            assert result.exit_code == 1, result.output
            assert message in result.output and result.output.count("\n") == 1, result.output
            assert "Traceback" not in result.output


def test_serve_refuses_to_start_with_a_broken_lists_file(cli: Run, site_dir: Path) -> None:
    (site_dir / "subscribers" / "lists.toml").write_text(
        '[news]\nname = "News"\nopt_in = "maybe"\n'
    )
    result = cli("serve", "--port", "1")
    assert result.exit_code == 1
    assert 'subscribers/lists.toml:3: [news] opt_in must be "double" or "single"' in result.output
    assert "Traceback" not in result.output
