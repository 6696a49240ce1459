"""Several web servers, one behaviour (issue #17, item 2): two real `newsroom serve` processes
on one PostgreSQL database, requests alternating between them. Skipped without PostgreSQL."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from newsroom.database import transaction
from newsroom.models import (
    ClientWindow,
    ConsentEvent,
    ConsentKind,
    Subscriber,
    Subscription,
    utcnow,
)
from newsroom.people import subscribers
from newsroom.site import Site
from newsroom.web.clientwindows import ClientWindows
from tests.conftest import POSTGRES_URL
from tests.smtpserver import TestSMTPServer
from tests.webserver import Server, start

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="NEWSROOM_TEST_POSTGRES_URL is not set")

Servers = Callable[[str], tuple[Server, Server]]


@pytest.fixture
def servers(
    site_dir: Path,
    smtp_server: TestSMTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Servers]:
    """Starts two servers of the site (one database, one secret key) at a subscribe rate."""
    running: list[Server] = []

    def pair(rate: str) -> tuple[Server, Server]:
        monkeypatch.setenv("NEWSROOM_WEB_SUBSCRIBE_RATE", rate)
        running.extend(start(site_dir, tmp_path / f"serve-{n}.log") for n in "ab")
        return running[0], running[1]

    yield pair
    for server in running:
        server.stop()


def form_token(browser: httpx.Client, server: Server) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', browser.get(f"{server.url}/").text)
    assert found
    return found.group(1)


def post(browser: httpx.Client, server: Server, token: str, email: str) -> httpx.Response:
    data = {"form_token": token, "email": email, "lists": "all-members"}
    return browser.post(f"{server.url}/subscribe", data=data)


def test_a_form_from_one_server_is_accepted_by_the_other(
    servers: Servers, smtp_server: TestSMTPServer
) -> None:
    a, b = servers("100/hour")
    with httpx.Client(timeout=10) as browser:  # one cookie jar: both are 127.0.0.1
        answer = post(browser, b, form_token(browser, a), "ann@example.org")
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        forged = post(browser, a, form_token(browser, b)[:-2] + "xx", "bob@example.org")
        assert forged.status_code == 400 and "This form had expired" in forged.text
    assert len(smtp_server.wait_for("ann@example.org")) == 1
    assert smtp_server.to("bob@example.org") == []


def test_the_rate_limit_counts_a_client_on_both_servers_together(
    servers: Servers, site_dir: Path
) -> None:
    a, b = servers("3/hour")
    with httpx.Client(timeout=10) as browser:
        token = form_token(browser, a)
        answers = [post(browser, s, token, f"p{n}@example.org") for n, s in enumerate([a, b] * 3)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429, 429]
    assert "Too many subscribe requests" in answers[3].text
    assert 1 <= int(answers[4].headers["Retry-After"]) <= 3600
    site = Site.open(site_dir)
    try:
        with transaction(site.engine) as session:
            rows = session.scalars(select(ClientWindow)).all()
    finally:
        site.close()
    # One row for the client's window, keyed by a keyed hash: the address is nowhere.
    assert [row.count for row in rows] == [3]
    assert re.fullmatch(r"[0-9a-f]{64}", rows[0].key) and "127.0.0.1" not in rows[0].key


@pytest.mark.parametrize("known", [False, True], ids=["new", "known"])
def test_two_requests_at_once_to_two_servers_send_one_confirmation(
    servers: Servers, smtp_server: TestSMTPServer, site_dir: Path, known: bool
) -> None:
    a, b = servers("1000/hour")
    addresses = [f"twice{n}@example.org" for n in range(8)]
    if known:  # on file, never sent a confirmation (as an import with --no-email leaves them)
        site = Site.open(site_dir)
        with transaction(site.engine) as session:
            session.add_all(Subscriber(email=e, name="", created_at=utcnow()) for e in addresses)
        site.close()
    with httpx.Client(timeout=10) as browser:
        token = form_token(browser, a)
        for address in addresses:  # each one posted to both servers at the same moment
            together = threading.Barrier(2)

            def send(
                server: Server, address: str = address, together: threading.Barrier = together
            ) -> int:
                with httpx.Client(timeout=10, cookies=browser.cookies) as own:  # no pool
                    together.wait()
                    return post(own, server, token, address).status_code

            with ThreadPoolExecutor(2) as pool:
                assert list(pool.map(send, [a, b])) == [200, 200]
    a.stop(), b.stop()  # a stopping server finishes its requests' background work first
    for address in addresses:
        assert len(smtp_server.to(address)) == 1, address
    site = Site.open(site_dir)
    try:
        with transaction(site.engine) as session:
            people = session.scalar(select(func.count()).select_from(Subscriber))
            requested = session.scalar(
                select(func.count())
                .select_from(ConsentEvent)
                .where(ConsentEvent.kind == ConsentKind.REQUESTED)
            )
    finally:
        site.close()
    assert (people, requested) == (8, 16)  # both requests are in the ledger, one person each


def test_one_click_groups_committed_by_both_servers_at_once(servers: Servers, site: Site) -> None:
    a, b = servers("100/hour")  # they bring the lists in step with lists.toml
    tokens = []
    for n in range(30):
        email = f"leaver{n}@example.org"
        subscribers.add(site, email, ["all-members"], now=utcnow())
        with transaction(site.engine) as session:
            person = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
            for sub in session.scalars(
                select(Subscription).where(Subscription.subscriber_id == person.id)
            ):
                sub.status = "confirmed"
            person_id = person.id
        tokens.append(subscribers.unsubscribe_token(site, person_id, email, None, now=utcnow()))
    # Every link clicked on both servers, in opposite orders: groups overlap across processes.
    work = [(a, t) for t in tokens] + [(b, t) for t in reversed(tokens)]

    def click(job: tuple[Server, str]) -> int:
        server, token = job
        return httpx.post(
            f"{server.url}/unsubscribe/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(click, work))
    assert codes == [200] * 60
    with transaction(site.engine) as session:
        assert set(session.scalars(select(Subscription.status))) == {"unsubscribed"}
        left = session.scalar(
            select(func.count())
            .select_from(ConsentEvent)
            .where(ConsentEvent.kind == ConsentKind.UNSUBSCRIBED)
        )
    assert left == 30  # each left once: the second click changed nothing


T0 = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC).timestamp()


def test_a_client_window_slides_and_its_rows_go(site: Site) -> None:
    limit = ClientWindows(site, "3/hour")
    minute = 60.0
    assert [limit.allow("192.0.2.7", T0 + m * minute) for m in (0, 20, 40, 50)] == [
        True,
        True,
        True,
        False,  # a refused request is not counted
    ]
    assert limit.retry_after("192.0.2.7", T0 + 50 * minute) == 10 * minute - 30  # T0's slot
    assert limit.allow("198.51.100.1", T0 + 50 * minute)  # another client, its own count
    assert limit.allow("192.0.2.7", T0 + 60 * minute)  # the first request no longer counts
    assert not limit.allow("192.0.2.7", T0 + 61 * minute)
    with transaction(site.engine) as session:
        keys = session.scalars(select(ClientWindow.key)).all()  # the first row has gone
    assert len(keys) == 4 and not any("192.0.2" in k or "198.51" in k for k in keys)
    assert limit.allow("192.0.2.7", T0 + 3 * 60 * minute)  # a later slot sweeps the old rows
    with transaction(site.engine) as session:
        assert session.scalars(select(ClientWindow.count)).all() == [1]


def test_a_clients_last_place_is_taken_once_by_many_at_once(site: Site) -> None:
    limits = [ClientWindows(site, "5/minute") for _ in range(2)]  # two servers' limiters
    together = threading.Barrier(20)

    def ask(n: int) -> bool:
        together.wait()
        return limits[n % 2].allow("203.0.113.9", T0)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, range(20)))
    assert answers.count(True) == 5
