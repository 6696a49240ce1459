"""Faults survived (issue #17, item 3), each with real processes: a worker SIGKILLed mid-mailing
while two others carry on (PostgreSQL), the relay going away and coming back, and the database
restarting under a worker (a PostgreSQL cluster the test starts itself in a temporary folder)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsroom import site as sites
from newsroom.delivery import mailings
from newsroom.models import Delivery, MailingStatus
from newsroom.site import Site
from tests.conftest import POSTGRES_URL, TEST_SECRET
from tests.sendhelp import Output, Workers, make_mailing, newsroom, subscribe, wait_for
from tests.smtpserver import TestSMTPServer, free_port
from tests.test_cli_sending import in_status, received_at_least

pytestmark = pytest.mark.slow


@pytest.fixture
def opened(site_dir: Path, smtp_server: TestSMTPServer) -> Iterator[Site]:
    site = Site.open(site_dir)
    yield site
    site.close()


def stop(worker: Output) -> list[str]:
    worker.process.send_signal(signal.SIGTERM)
    lines = worker.finish(60)
    assert worker.process.returncode == 0, lines
    assert not any("Traceback" in line for line in lines), lines
    return lines


def received(server: TestSMTPServer) -> Counter[str]:
    return Counter(m.rcpt_tos[0] for m in list(server.messages))


def status(site: Site, mailing_id: int) -> str:
    return mailings.get(site.engine, mailing_id).status


def settled(site: Site, mailing_id: int) -> bool:
    return status(site, mailing_id) != MailingStatus.SENDING


# --- a worker SIGKILLed -----------------------------------------------------------------------


@pytest.mark.skipif(not POSTGRES_URL, reason="several workers need PostgreSQL")
def test_a_worker_killed_mid_mailing_leaves_its_claims_to_the_others(
    opened: Site,
    smtp_server: TestSMTPServer,
    workers: Workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three workers on one mailing, one SIGKILLed once messages flow: the others settle its
    claims from its journal (its advisory lock freed with its connections) and finish. Nobody
    is lost or doubled; uncertain are at most its connections' messages in flight."""
    connections = 4
    monkeypatch.setenv("NEWSROOM_SMTP_CONNECTIONS", str(connections))
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "600/second")  # each: a mailing of ~3 s or more
    monkeypatch.setenv("NEWSROOM_SMTP_TIMEOUT", "10")
    emails = subscribe(opened, 2000)
    team = workers.start(3)
    created = make_mailing(opened)
    ident = created.mailing_id
    victim = team[0]
    victim_name = Workers.name(victim)

    def victim_sent() -> bool:  # it has claimed and sent: its death leaves work behind
        with opened.engine.connect() as connection:
            mine = connection.scalar(
                select(func.count()).where(
                    Delivery.mailing_id == ident, Delivery.claimed_by == victim_name
                )
            )
        return bool(mine) and received_at_least(smtp_server, 300)

    wait_for(victim_sent, "the first worker to send", 120)
    victim.process.send_signal(signal.SIGKILL)
    victim.finish(60)
    assert received_at_least(smtp_server, 1) and len(smtp_server.messages) < len(emails)
    wait_for(partial(settled, opened, ident), "the others to finish the mailing", 180)
    for worker in team[1:]:
        stop(worker)

    assert status(opened, ident) == MailingStatus.DONE
    got = received(smtp_server)
    uncertain = in_status(opened, ident, "sending")
    assert len(uncertain) <= connections
    with opened.engine.connect() as connection:
        claimants = set(
            connection.scalars(
                select(Delivery.claimed_by).where(
                    Delivery.mailing_id == ident, Delivery.status == "sending"
                )
            )
        )
    assert claimants <= {victim_name}  # only the dead worker's messages in flight
    assert [e for e, n in got.items() if n > 1] == []  # nobody doubled
    assert set(emails) - set(got) <= set(uncertain)  # nobody lost
    assert len(in_status(opened, ident, "sent")) == len(emails) - len(uncertain)


# --- the relay goes away ----------------------------------------------------------------------


def data_commands(server: TestSMTPServer, since: int) -> int:
    return sum(command.startswith("DATA ") for command in list(server.commands)[since:])


def test_the_relay_going_away_defers_only_what_was_in_flight(
    opened: Site,
    smtp_server: TestSMTPServer,
    workers: Workers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The relay stops mid-mailing with a message on each connection (held at DATA) and comes
    back on the same port: those messages are deferred (sending.retry_first, then sent), the rest
    wait as they were, the mailing is never paused, and the worker waits with backoff and says
    when the relay answers again. Everyone gets the issue once."""
    connections = 4
    monkeypatch.setenv("NEWSROOM_SMTP_CONNECTIONS", str(connections))
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "400/second")
    monkeypatch.setenv("NEWSROOM_SENDING_RETRY_FIRST", "1")  # deferred: retried 0.5-1.5 s on
    monkeypatch.setenv("NEWSROOM_SMTP_TIMEOUT", "30")  # the held messages end with the relay
    emails = subscribe(opened, 1500)
    (worker,) = workers.start()
    created = make_mailing(opened)
    ident = created.mailing_id
    wait_for(partial(received_at_least, smtp_server, 200), "messages", 120)
    mark = len(smtp_server.commands)
    smtp_server.stall("DATA", 120.0)  # each connection's next message waits for an answer
    wait_for(lambda: data_commands(smtp_server, mark) >= connections, "every connection held", 60)
    smtp_server.stop()  # the relay goes away, the held messages unanswered
    smtp_server.rules.clear()
    wait_for(partial(worker.says, "worker: cannot reach the SMTP relay"), "the worker to wait", 60)

    assert status(opened, ident) == MailingStatus.SENDING  # never paused for it
    deferred = in_status(opened, ident, "deferred")
    assert len(deferred) == connections  # the messages in flight, and no others
    assert not set(deferred) & set(received(smtp_server))
    sent = in_status(opened, ident, "sent")
    assert sorted(in_status(opened, ident, "pending")) == sorted(
        set(emails) - set(sent) - set(deferred)
    )
    assert in_status(opened, ident, "sending") == []

    smtp_server.start()  # back, on the same port
    wait_for(partial(settled, opened, ident), "the mailing to finish", 180)
    wait_for(partial(worker.says, "worker: the relay answers again"), "the worker to say so", 60)
    lines = stop(worker)
    assert status(opened, ident) == MailingStatus.DONE
    assert len(in_status(opened, ident, "sent")) == len(emails)
    got = received(smtp_server)
    assert set(got) == set(emails) and set(got.values()) == {1}
    with opened.engine.connect() as connection:
        attempts = dict(
            connection.execute(
                select(Delivery.email, Delivery.attempts).where(Delivery.mailing_id == ident)
            ).all()
        )
    assert {attempts[e] for e in deferred} == {2}  # deferred once, then sent
    assert set(attempts.values()) == {1, 2}
    down = [line for line in lines if "cannot reach the SMTP relay" in line]
    assert len(down) == 1 and "trying again in 0.5 s, then less often" in down[0], lines


# --- the database restarts --------------------------------------------------------------------


class Cluster:
    """A PostgreSQL cluster of the test's own in a temporary folder (never the machine's),
    run as the postgres user when the test runs as root, on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.data, self.port = folder, folder / "data", free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *args: str) -> None:
        done = subprocess.run([*self.as_postgres, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    def init(self) -> Cluster:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "postgres.log")
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not on PATH")
    folder = Path(tempfile.mkdtemp(prefix="newsroom-pg-"))  # in /tmp: postgres can reach it
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    own = Cluster(folder).init()
    own.start()
    try:
        yield own
    finally:
        with contextlib.suppress(AssertionError):  # stopped already
            own.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


def own_site(
    tmp_path: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Site]:
    """A new site on CLUSTER, sending at 300 a second, opened."""
    root = tmp_path / "site"
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", cluster.url)
    monkeypatch.setenv("NEWSROOM_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("NEWSROOM_SITE_LOCAL", "true")
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "300/second")
    sites.init(root, "Test Newsroom")
    return root, Site.open(root)


def test_a_worker_outlasts_the_database_restarting(
    tmp_path: Path,
    cluster: Cluster,
    smtp_server: TestSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database stops mid-send and starts again: the worker says it waits, looks again
    with backoff, takes its sender lock again, settles its own claims from its journal and
    finishes the mailing; nobody lost, nobody doubled."""
    root, site = own_site(tmp_path, cluster, monkeypatch)
    emails = subscribe(site, 1500)
    created = make_mailing(site)
    ident = created.mailing_id
    team = Workers(root)
    try:
        (worker,) = team.start()
        wait_for(partial(received_at_least, smtp_server, 200), "messages", 120)
        cluster.stop()  # mid-send: every connection closed, the sender lock with them
        wait_for(partial(worker.says, "worker: the database does not answer"), "a wait", 60)
        assert worker.process.poll() is None
        cluster.start()
        wait_for(partial(worker.says, "worker: the database answers again"), "a reconnect", 120)
        wait_for(partial(settled, site, ident), "the mailing to finish", 180)
        lines = stop(worker)
    finally:
        team.close()
    assert status(site, ident) == MailingStatus.DONE
    got = received(smtp_server)
    assert set(got) == set(emails)  # nobody lost
    assert [e for e, n in got.items() if n > 1] == []  # nobody doubled
    assert len(in_status(site, ident, "sent")) == len(emails)
    down = [line for line in lines if "the database does not answer" in line]
    assert len(down) == 1 and "trying again in 0.5 s, then less often" in down[0], lines
    assert [line for line in lines if "error ignored" in line] == []  # the driver's cleanup
    site.close()


def test_send_stops_in_one_line_when_the_database_goes_away(
    tmp_path: Path,
    cluster: Cluster,
    smtp_server: TestSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the worker waits for the database: `newsroom send` stops with one line and no
    traceback, and `send --resume` finishes the mailing once the database is back, nobody lost
    and nobody doubled."""
    root, site = own_site(tmp_path, cluster, monkeypatch)
    emails = subscribe(site, 1500)
    ident = make_mailing(site).mailing_id
    site.close()
    sender = Output(newsroom(root, "send", "--resume", str(ident), "--yes"))
    try:
        wait_for(partial(received_at_least, smtp_server, 200), "messages", 120)
        cluster.stop()
        lines = sender.finish(120)
    finally:
        if sender.process.poll() is None:
            sender.process.kill()
            sender.finish()
    assert sender.process.returncode == 1, lines
    said = [line for line in lines if line.strip()]
    assert said[-1].startswith("Error: the database stopped answering ("), lines
    assert not any("Traceback" in line or "Error: unexpected" in line for line in said), lines
    cluster.start()
    finished = Output(newsroom(root, "send", "--resume", str(ident), "--yes"))
    assert finished.finish(180) and finished.process.returncode == 0, finished.lines
    site = Site.open(root)
    got = received(smtp_server)
    assert set(got) - set(emails) == set()
    assert [e for e, n in got.items() if n > 1] == []  # nobody doubled
    assert len(in_status(site, ident, "sent")) + len(in_status(site, ident, "sending")) == 1500
    site.close()
