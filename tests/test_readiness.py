"""readiness.py: which settings are placeholders a real mailing must not go out with, and every
way a mailing goes out refusing them (send, --resume, a worker, the sender itself) unless the
relay is a real `newsroom dev-smtp` process; --dry-run and check warn, check --strict fails."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsroom import settings
from newsroom.delivery import mailings, readiness
from newsroom.models import MailingStatus
from newsroom.site import Site
from tests.conftest import Run
from tests.sendhelp import make_mailing, run, subscribe
from tests.smtpserver import TestSMTPServer, free_port


@pytest.mark.parametrize(
    ("domain", "words"),
    [
        ("example.org", "an example domain"),
        ("news.example.com", "an example domain"),
        ("example.co.uk", "an example domain"),
        ("localhost", "reserved for tests"),
        ("mail.test", "reserved for tests"),
        ("x.invalid", "reserved for tests"),
        ("box.localhost", "reserved for tests"),
        ("printer.local", "reserved for tests"),
        ("127.0.0.1", "an IP address"),
        ("[::1]", "an IP address"),
        ("intranet", "no dot"),
        ("", "reserved for tests"),
    ],
)
def test_placeholder_domains(domain: str, words: str) -> None:
    reason = readiness.placeholder_domain(domain)
    assert reason is not None and words in reason


@pytest.mark.parametrize("domain", ["labourleft.org", "news.disability-group.org.uk", "münchen.de"])
def test_real_domains(domain: str) -> None:
    assert readiness.placeholder_domain(domain) is None


def config(tmp_path: Path, environ: dict[str, str]) -> settings.Config:
    (tmp_path / "newsroom.toml").write_text("", encoding="utf-8")
    return settings.load(tmp_path, environ)


# The refusal on a new site, line by line (every send path says exactly this).
NEW_SITE = [
    "a real mailing cannot go out with placeholder settings (a --test copy, or a send to "
    "`newsroom dev-smtp`, can):",
    "  site.base_url is 'http://localhost:8000': a name reserved for tests and examples "
    "(RFC 2606, RFC 6761); set it to the https:// address of your public web side, such as "
    "https://news.your-organisation.org (unsubscribe and preference links, and List-Id, "
    "are made from it)",
    "  site.sender is 'Newsroom <newsroom@example.org>': its domain is an example domain, "
    "not yours; set it to an address at your own domain (the From: address and the "
    'Message-ID domain), such as "Our Campaign <news@your-organisation.org>"',
    "  sending.bounce_address is 'bounces@example.org': its domain is an example domain, "
    "not yours; set it to an address at your own domain (the envelope sender that bounce "
    "reports come back to), such as bounces@your-organisation.org (its mailbox must also "
    "take bounces+anything@ — plus-addressing — see Going live)",
    "Set them in newsroom.toml (or NEWSROOM_* variables); `newsroom doctor` checks the rest.",
]
REFUSED = ["Error: " + NEW_SITE[0], *NEW_SITE[1:]]  # as the CLI prints it
# What `check` and `send --dry-run` print instead (they ask no relay): one line per setting.
WARNINGS = [
    f"newsroom.toml: warning: a mailing through a real relay is refused: {line.strip()}"
    for line in NEW_SITE[1:-1]
]
REAL = {
    "NEWSROOM_SITE_BASE_URL": "https://news.labourleft.org",
    "NEWSROOM_SITE_SENDER": "Labour Left <news@labourleft.org>",
    "NEWSROOM_SENDING_BOUNCE_ADDRESS": "bounces@labourleft.org",
}


def test_a_new_site_names_every_placeholder(tmp_path: Path) -> None:
    assert readiness.refusal(config(tmp_path, {})).splitlines() == NEW_SITE


def test_http_on_a_real_host_is_still_refused(tmp_path: Path) -> None:
    found = readiness.problems(
        config(
            tmp_path,
            {
                "NEWSROOM_SITE_BASE_URL": "http://news.labourleft.org",
                "NEWSROOM_SITE_SENDER": "Labour Left <news@labourleft.org>",
                "NEWSROOM_SENDING_BOUNCE_ADDRESS": "bounces@labourleft.org",
            },
        )
    )
    assert [(u.setting, u.problem) for u in found] == [
        ("site.base_url", "not https:// (one-click unsubscribe needs https, RFC 8058)")
    ]


def test_real_settings_are_ready(tmp_path: Path) -> None:
    ready = config(tmp_path, REAL)
    assert readiness.problems(ready) == []
    readiness.check_relay(ready, "smtp.labourleft.org ESMTP")  # any relay: nothing raised


@pytest.mark.parametrize(
    ("host", "greeting", "dev"),
    [
        ("localhost", "newsroom-dev-smtp\nPIPELINING", True),
        ("127.0.0.1", "newsroom-dev-smtp Python SMTP 1.4.6", True),
        ("::1", "newsroom-dev-smtp", True),
        ("smtp.labourleft.org", "newsroom-dev-smtp", False),  # across a network: it delivers
        ("192.0.2.7", "newsroom-dev-smtp", False),
        ("localhost", "mx.labourleft.org ESMTP newsroom-dev-smtp", False),  # its name is first
        ("localhost", "newsroom-dev-smtp.labourleft.org", False),
        ("localhost", "", False),
    ],
)
def test_the_dev_smtp_is_believed_only_on_this_machine(
    tmp_path: Path, host: str, greeting: str, dev: bool
) -> None:
    placeholders = config(tmp_path, {"NEWSROOM_SMTP_HOST": host})
    assert readiness.is_dev_smtp(placeholders, greeting) is dev
    if dev:
        readiness.check_relay(placeholders, greeting)
    else:
        with pytest.raises(readiness.NotReady) as refused:
            readiness.check_relay(placeholders, greeting)
        assert str(refused.value).splitlines() == NEW_SITE


def test_a_local_test_site_sends_with_placeholders_anywhere(tmp_path: Path) -> None:
    local = config(tmp_path, {"NEWSROOM_SITE_LOCAL": "true"})
    assert readiness.problems(local) != [] and readiness.blocking(local) == []
    readiness.check_relay(local, "smtp.labourleft.org ESMTP")
    assert readiness.warnings(local) == []


# --- every way a mailing goes out, with placeholder settings --------------------------------

BULLETIN = """---
title: Bulletin
date: 2021-04-01
to: all-members
summary: The news.
---
The news.
"""


@pytest.fixture
def relay(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> TestSMTPServer:
    """A relay that is not `newsroom dev-smtp`, and a site that is not a local test site."""
    monkeypatch.setenv("NEWSROOM_SITE_LOCAL", "false")
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    return smtp_server


@pytest.fixture
def members(site_dir: Path) -> Iterator[Site]:
    """The site with two members and the issue `bulletin` for all-members."""
    (site_dir / "issues" / "2021-04-01-bulletin.md").write_text(BULLETIN, encoding="utf-8")
    site = Site.open(site_dir)
    subscribe(site, 2)
    yield site
    site.close()


def test_a_real_send_is_refused_before_it_asks(
    cli: Run, relay: TestSMTPServer, members: Site
) -> None:
    for yes in (["--yes"], []):
        refused = cli("send", "bulletin", *yes)
        assert (refused.exit_code, refused.stdout) == (1, ""), refused.output
        assert refused.stderr.splitlines() == REFUSED
    assert relay.messages == []
    assert cli("mailings").output.startswith("no mailings yet")
    copy = cli("send", "bulletin", "--test", "editor@example.net")  # a test copy is no mailing
    assert copy.exit_code == 0, copy.output
    assert [m.rcpt_tos for m in relay.messages] == [["editor@example.net"]]


def test_resume_is_refused(cli: Run, relay: TestSMTPServer, members: Site) -> None:
    created = make_mailing(members)
    mailings.pause(members.engine, created.mailing_id, "paused by hand")
    refused = cli("send", "--resume", str(created.mailing_id))
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr.splitlines() == REFUSED
    assert relay.messages == []
    assert mailings.get(members.engine, created.mailing_id).status == MailingStatus.PAUSED


def test_a_worker_does_not_send_it(cli: Run, relay: TestSMTPServer, members: Site) -> None:
    created = make_mailing(members)
    refused = cli("worker", "--once")
    assert refused.exit_code == 1
    started, *rest = refused.stderr.splitlines()
    assert started.startswith("worker ") and started.endswith(" started (Ctrl-C to stop)")
    assert rest == REFUSED
    assert relay.messages == []
    assert mailings.counts(members.engine, created.mailing_id).to_do == 2


def test_the_sender_itself_refuses(relay: TestSMTPServer, members: Site, site_dir: Path) -> None:
    """Whoever calls the library to send a mailing (a helper process, code of one's own)."""
    created = make_mailing(members)
    site = Site.open(site_dir)  # its settings read now: not a local test site
    try:
        with pytest.raises(readiness.NotReady) as refused:
            run(site, created.mailing_id)
    finally:
        site.close()
    assert str(refused.value).splitlines() == NEW_SITE
    assert relay.messages == []
    assert mailings.counts(members.engine, created.mailing_id).to_do == 2


def test_a_dry_run_warns_and_still_lists_who_would_get_it(
    cli: Run, relay: TestSMTPServer, members: Site
) -> None:
    dry = cli("send", "bulletin", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == ["p0@example.net\temail", "p1@example.net\temail"]
    assert dry.stderr.splitlines() == [
        *WARNINGS,
        "dry run: bulletin to 'all-members': 2 get email; nothing sent",
    ]


def test_check_warns_and_strict_fails(
    cli: Run, members: Site, site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SITE_LOCAL", "false")
    ok = "issues/2021-04-01-bulletin.md: ok — 2 variants, email 13 KB\n"
    plain = cli("check")
    assert (plain.exit_code, plain.stderr.splitlines()) == (0, WARNINGS), plain.output
    strict = cli("check", "--strict")
    assert (strict.exit_code, strict.stderr.splitlines()) == (1, WARNINGS)
    assert plain.stdout == strict.stdout == ok
    as_json = json.loads(cli("check", "--strict", "--json").stdout)
    assert as_json[-1] == {"path": "newsroom.toml", "errors": [], "warnings": WARNINGS}
    # Each at the place it is set: newsroom.toml's line, or the variable that set it.
    toml = site_dir / "newsroom.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(
        text.replace(
            '# base_url = "http://localhost:8000"', 'base_url = "http://news.labourleft.org"'
        ),
        encoding="utf-8",
    )
    line = text.splitlines().index('# base_url = "http://localhost:8000"') + 1
    monkeypatch.setenv("NEWSROOM_SITE_SENDER", "Labour Left <news@labourleft.org>")
    monkeypatch.setenv("NEWSROOM_SENDING_BOUNCE_ADDRESS", "bounces@labourleft.test")
    moved = cli("check", "--strict")
    assert moved.exit_code == 1
    assert moved.stderr.splitlines() == [
        f"newsroom.toml:{line}: warning: a mailing through a real relay is refused: "
        "site.base_url is 'http://news.labourleft.org': not https:// (one-click unsubscribe "
        "needs https, RFC 8058); set it to the https:// address of your public web side, such "
        "as https://news.your-organisation.org (unsubscribe and preference links, and List-Id, "
        "are made from it)",
        "NEWSROOM_SENDING_BOUNCE_ADDRESS: warning: a mailing through a real relay is refused: "
        "sending.bounce_address is 'bounces@labourleft.test': its domain is a name reserved for "
        "tests and examples (RFC 2606, RFC 6761); set it to an address at your own domain (the "
        "envelope sender that bounce reports come back to), such as "
        "bounces@your-organisation.org (its mailbox must also take bounces+anything@ — "
        "plus-addressing — see Going live)",
    ]
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    ready = cli("check", "--strict")
    assert (ready.exit_code, ready.stderr) == (0, ""), ready.output


def test_real_settings_send_through_any_relay(
    cli: Run, relay: TestSMTPServer, members: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    asked = cli("send", "bulletin", input="y\n")
    assert asked.exit_code == 0, asked.output
    assert asked.stdout.startswith(
        "Send 'Bulletin' to 'all-members': 2 recipient(s), from news@labourleft.org through "
        f"127.0.0.1:{relay.port}? [y/N]: y\n"
    )
    assert len(relay.messages) == 2
    unsubscribe = relay.messages[0].message["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://news.labourleft.org/unsubscribe/")


@pytest.fixture
def dev_smtp(site_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real `newsroom dev-smtp` process on a free port, the site's relay; yields its Maildir."""
    port, folder = free_port(), tmp_path / "outbox"
    monkeypatch.setenv("NEWSROOM_SITE_LOCAL", "false")
    monkeypatch.setenv("NEWSROOM_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(port))
    server = subprocess.Popen(
        [sys.executable, "-m", "newsroom", "--site", str(site_dir), "dev-smtp",
         "--maildir", str(folder), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, server)
        yield folder
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def wait_for_port(port: int, server: subprocess.Popen[str], deadline: float = 60.0) -> None:
    """Until the server accepts connections (a generous deadline: the machine is shared)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"dev-smtp did not listen on {port}")


def test_a_send_to_newsroom_dev_smtp_goes_out_with_placeholders(
    cli: Run, dev_smtp: Path, members: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = os.environ["NEWSROOM_SMTP_PORT"]
    sent = cli("send", "bulletin", input="y\n")
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.splitlines()[:2] == [
        "Send 'Bulletin' to 'all-members': 2 recipient(s), from newsroom@example.org through "
        f"127.0.0.1:{port} (newsroom dev-smtp)? [y/N]: y",
        "mailing 1: 2 deliveries frozen",
    ]
    assert "mailing 1 done: 2 sent" in sent.stdout
    make_mailing(members, slug="second")
    worked = cli("worker", "--once")
    assert worked.exit_code == 0, worked.output
    assert "worker stopped: 2 sent" in worked.stdout
    assert len(mailbox.Maildir(dev_smtp, create=False)) == 4
