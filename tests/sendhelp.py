"""Helpers for the sending tests: subscribers in the database, a mailing, a sender run, a site
that signs with DKIM, newsroom processes and their output, and `newsroom worker`s."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import dkim
import pytest
from sqlalchemy import insert, select, update

from newsroom.database import transaction
from newsroom.delivery import mailings
from newsroom.delivery.mailings import Addressee, Content, Result
from newsroom.delivery.senders import SenderLock
from newsroom.delivery.sending import Sender, SenderReport
from newsroom.models import MailingList, Subscriber, Subscription, SubscriptionStatus, utcnow
from newsroom.people import lists
from newsroom.site import Site

DKIM_DOMAIN, DKIM_SELECTOR = "example.org", "news"
TEXT = "Dear {{first_name|friend}},\n\nNews.\n\nLeave: {{unsubscribe_url}}\n"
HTML = '<p>Dear {{first_name|friend}},</p>\n<p>News.</p>\n<a href="{{unsubscribe_url}}">Leave</a>\n'


def subscribe(site: Site, count: int, list_slug: str = "all-members", start: int = 0) -> list[str]:
    """COUNT confirmed subscribers p{start}..@example.net on LIST_SLUG; returns their addresses."""
    people = {f"p{i}@example.net": f"Person {i}" for i in range(start, start + count)}
    return subscribe_people(site, people, list_slug)


def subscribe_people(
    site: Site, people: dict[str, str], list_slug: str = "all-members"
) -> list[str]:
    """The addresses of PEOPLE (address: name, written as they are) confirmed on LIST_SLUG."""
    lists.sync(site)
    emails = list(people)
    now = utcnow()
    with transaction(site.engine) as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.slug == list_slug))
        known = set(session.scalars(select(Subscriber.email).where(Subscriber.email.in_(emails))))
        new = [
            {"email": e, "name": name, "created_at": now}
            for e, name in people.items()
            if e not in known
        ]
        if new:
            session.execute(insert(Subscriber), new)
        ids = session.scalars(select(Subscriber.id).where(Subscriber.email.in_(emails))).all()
        session.execute(
            insert(Subscription),
            [
                {
                    "subscriber_id": sid,
                    "list_id": list_id,
                    "status": SubscriptionStatus.CONFIRMED,
                    "created_at": now,
                    "updated_at": now,
                }
                for sid in ids
            ],
        )
    return emails


def unsubscribe(site: Site, email: str) -> None:
    with transaction(site.engine) as session:
        sid = session.scalar(select(Subscriber.id).where(Subscriber.email == email))
        session.execute(
            update(Subscription)
            .where(Subscription.subscriber_id == sid)
            .values(status=SubscriptionStatus.UNSUBSCRIBED)
        )


def make_mailing(
    site: Site,
    expression: str = "all-members",
    slug: str = "save-our-socialists",
    again: bool = False,
    now: datetime | None = None,
) -> mailings.Created:
    with transaction(site.engine) as session:
        rows = session.execute(
            select(Subscriber.id, Subscriber.email)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(Subscription.status == SubscriptionStatus.CONFIRMED)
            .order_by(Subscriber.id)
        ).all()
    return mailings.create(
        site.engine,
        issue_slug=slug,
        issue_path=f"issues/2020-12-24-{slug}.md",
        subject="Save our socialists",
        expression=expression,
        variants={"main": Content("Save our socialists", HTML, TEXT)},
        addressees=[Addressee(sid, email, "main") for sid, email in rows],
        again=again,
        now=now or utcnow(),
    )


def run(
    site: Site,
    mailing_id: int,
    *,
    clock: Callable[[], datetime] = utcnow,
    on_result: Callable[[Result], object] | None = None,
    lock: SenderLock | None = None,
) -> SenderReport:
    async def go() -> SenderReport:
        sender = Sender(site, held, clock=clock, on_result=on_result)
        try:
            return await sender.run(mailing_id)
        finally:
            await sender.close()

    held = lock or SenderLock(site.engine).acquire()
    try:
        return asyncio.run(go())
    finally:
        if lock is None:
            held.release()


def sign_with_dkim(
    site_dir: Path, dkim_key: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> Callable[[bytes], bool]:
    """Make the site at SITE_DIR sign with DKIM_KEY (the conftest fixture's: key, DNS record),
    as `newsroom doctor` tells a volunteer to; returns dkimpy's verdict on a received message,
    with that record as the DNS answer."""
    private, record = dkim_key
    key_file = site_dir / "dkim.pem"
    key_file.write_bytes(private)
    key_file.chmod(0o600)
    monkeypatch.setenv("NEWSROOM_DKIM_DOMAIN", DKIM_DOMAIN)
    monkeypatch.setenv("NEWSROOM_DKIM_SELECTOR", DKIM_SELECTOR)
    monkeypatch.setenv("NEWSROOM_DKIM_KEY_FILE", "dkim.pem")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}.".encode()
        return record

    def verifies(data: bytes) -> bool:
        return bool(dkim.verify(data, dnsfunc=dns))

    return verifies


# --- newsroom processes ------------------------------------------------------------------------


def newsroom(site_dir: Path, *args: str) -> subprocess.Popen[str]:
    """`newsroom --site SITE_DIR ARGS…` as a process, its output and errors on one pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "newsroom", "--site", str(site_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class Output:
    """The lines a running process prints, read as they come by a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def says(self, words: str) -> bool:
        return any(words in line for line in self.lines)

    def finish(self, seconds: float = 30.0) -> list[str]:
        self.process.wait(timeout=seconds)
        self.reader.join(timeout=seconds)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.lines


def wait_for(ready: Callable[[], object], what: str, seconds: float = 30.0) -> None:
    """Poll READY until it holds (a generous deadline: the machine is shared)."""
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)


STARTED = re.compile(r"worker (\S+) started \(Ctrl-C to stop\)")


class Workers:
    """`newsroom worker` processes of one site, polling every 0.05 s (the `workers` fixture:
    any a test leaves running are killed after it)."""

    def __init__(self, site_dir: Path) -> None:
        self.site_dir = site_dir
        self.started: list[Output] = []

    def start(self, count: int = 1, seconds: float = 120.0) -> list[Output]:
        """COUNT workers started together, each waited for until it says it has started (it
        holds its sender lock by then)."""
        batch = [Output(newsroom(self.site_dir, "worker", "--poll", "0.05")) for _ in range(count)]
        self.started.extend(batch)
        for output in batch:
            wait_for(partial(output.says, " started (Ctrl-C to stop)"), "a worker", seconds)
        return batch

    @staticmethod
    def name(output: Output) -> str:
        """The sender name a worker started under (its claims carry it)."""
        return next(m for line in output.lines if (m := STARTED.search(line))).group(1)

    def close(self) -> None:
        for output in self.started:
            if output.process.poll() is None:
                output.process.kill()
            output.finish()
