"""Helpers for the sending tests: subscribers in the database, a mailing, a sender run, a site
that signs with DKIM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
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
