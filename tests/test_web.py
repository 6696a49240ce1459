"""The web side through Starlette's test client: subscribe, confirm, one-click unsubscribe,
preferences, every bad token, the CSRF token, honeypot and rate limit, and the security headers.
Confirmation emails go through a real SMTP server."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from newsroom import tokens
from newsroom.database import transaction
from newsroom.models import ConsentEvent, ConsentText, Subscriber, Subscription
from newsroom.people import erasure, lists, subscribers
from newsroom.site import Site
from newsroom.web.app import create_app
from newsroom.web.security import FormGuard, redact
from tests.conftest import TEST_SECRET
from tests.smtpserver import TestSMTPServer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UA = "Mozilla/5.0 (test browser)"


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def web_site(site_dir: Path, smtp_server: TestSMTPServer) -> Iterator[Site]:
    opened = Site.open(site_dir)  # after smtp_server pointed the settings at the test server
    lists.sync(opened, NOW)
    yield opened
    opened.close()


@pytest.fixture
def client(web_site: Site, clock: Clock) -> Iterator[TestClient]:
    with TestClient(
        create_app(web_site, clock=clock), headers={"User-Agent": UA}, follow_redirects=False
    ) as test_client:
        yield test_client


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def subscribe(client: TestClient, email: str, *lists: str, **extra: str) -> str:
    """Open the form, post it as a browser would; returns the answer's text."""
    page = client.get("/")
    data = {"form_token": form_token(page.text), "email": email, "name": "Ann", **extra}
    answer = client.post("/subscribe", data={**data, "lists": list(lists or ["all-members"])})
    return answer.text


def link(smtp_server: TestSMTPServer, kind: str = "confirm", n: int = -1) -> str:
    text = smtp_server.messages[n].body()
    found = re.search(rf"http://localhost:8000/{kind}/(\S+)", text)
    assert found, text
    return found.group(1)


def statuses(site: Site, email: str) -> dict[int, str]:
    with transaction(site.engine) as session:
        person = session.scalars(select(Subscriber).where(Subscriber.email == email)).first()
        if person is None:
            return {}
        subs = session.scalars(select(Subscription).where(Subscription.subscriber_id == person.id))
        return {sub.list_id: sub.status for sub in subs}


def member(site: Site, email: str, *lists: str) -> int:
    """A confirmed subscriber (through the library, as an admin would add one)."""
    subscribers.add(site, email, list(lists or ["all-members"]), now=NOW)
    with transaction(site.engine) as session:
        person = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        for sub in session.scalars(
            select(Subscription).where(Subscription.subscriber_id == person.id)
        ):
            sub.status = "confirmed"
        return person.id


def unsubscribe_token(site: Site, person_id: int, email: str) -> str:
    return subscribers.unsubscribe_token(site, person_id, email, None, now=NOW)


def naming(site: Site, person_id: int, email: str) -> dict[str, object]:
    """A token payload naming subscriber PERSON_ID (with their token key) and EMAIL."""
    with transaction(site.engine) as session:
        key = session.scalar(select(Subscriber.token_key).where(Subscriber.id == person_id))
    return tokens.for_subscriber(person_id, email, key or "")


def preferences_token(site: Site, person_id: int, email: str) -> str:
    return tokens.make(site.config, "preferences", naming(site, person_id, email), now=NOW)


# -- subscribe --------------------------------------------------------------------------------


def test_home_page_offers_public_lists_only_with_security_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "All members" in page.text and "Disability Group" in page.text
    assert "CLP secretaries" not in page.text  # not public
    assert '<html lang="en-GB">' in page.text
    assert 'href="#main"' in page.text and '<main id="main"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp
    assert "<script" not in page.text
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "HttpOnly" in page.headers["set-cookie"]


def test_subscribe_confirm_records_consent_with_ip_and_user_agent(
    client: TestClient, web_site: Site, smtp_server: TestSMTPServer, clock: Clock
) -> None:
    answer = subscribe(client, "ann@example.org", "all-members", "disability-group")
    assert "Check your inbox" in answer
    assert len(smtp_server.to("ann@example.org")) == 1
    token = link(smtp_server)

    page = client.get(f"/confirm/{token}")  # a mail scanner following the link changes nothing
    assert page.status_code == 200 and "<button" in page.text and "ann@example.org" in page.text
    assert set(statuses(web_site, "ann@example.org").values()) == {"pending"}
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"

    clock.now = NOW + timedelta(hours=1)
    done = client.post(f"/confirm/{token}")
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert set(statuses(web_site, "ann@example.org").values()) == {"confirmed"}
    with transaction(web_site.engine) as session:
        rows = session.execute(
            select(ConsentEvent, ConsentText.version)
            .join(ConsentText, ConsentText.id == ConsentEvent.consent_text_id)
            .where(ConsentEvent.kind == "confirmed")
        ).all()
    assert len(rows) == 2
    for event, version in rows:
        assert event.ip == "testclient" and event.user_agent == UA and version == "1"
        assert event.at == NOW + timedelta(hours=1)
    again = client.post(f"/confirm/{token}")  # confirming twice changes nothing
    assert again.status_code == 200


def test_same_answer_whatever_the_address_state(
    client: TestClient, web_site: Site, smtp_server: TestSMTPServer, clock: Clock
) -> None:
    confirmed_id = member(web_site, "confirmed@example.org")
    subscribers.add(web_site, "pending@example.org", ["all-members"], now=NOW)
    left_id = member(web_site, "left@example.org")
    subscribers.unsubscribe(web_site, left_id, method="admin", now=NOW)
    member(web_site, "erased@example.org")
    erasure.erase(web_site, "erased@example.org", now=NOW)
    assert confirmed_id
    smtp_server.reset()
    clock.now = NOW + timedelta(hours=25)
    answers = {
        email: subscribe(client, email)
        for email in (
            "new@example.org",
            "pending@example.org",
            "confirmed@example.org",
            "left@example.org",
            "erased@example.org",
        )
    }
    assert len(set(answers.values())) == 1, answers
    # a confirmation for each but the confirmed one, who needs none
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "erased@example.org",
        "left@example.org",
        "new@example.org",
        "pending@example.org",
    ]


@dataclass
class Seen:
    """What the database and the relay held about one address at some moment."""

    statuses: dict[int, str]
    events: int
    confirmation_sent_at: datetime | None
    messages: int


def seen(site: Site, smtp_server: TestSMTPServer, email: str) -> Seen:
    with transaction(site.engine) as session:
        person = session.scalars(select(Subscriber).where(Subscriber.email == email)).first()
        events = session.scalars(select(ConsentEvent.id)).all()
        sent_at = person.confirmation_sent_at if person else None
    return Seen(statuses(site, email), len(events), sent_at, len(smtp_server.messages))


def post_watching(
    site: Site, smtp_server: TestSMTPServer, email: str, clock: Clock
) -> tuple[Seen, Seen, bytes]:
    """POST the form for EMAIL straight to the ASGI app; returns what was held when the answer's
    last byte was handed over, what was held once the app had finished, and the answer."""
    cookie = FormGuard.cookie_value(None)
    form = {
        "form_token": FormGuard(site.config).field(cookie, clock()),
        "email": email,
        "name": "Ann",
        "lists": "all-members",
    }
    body = urlencode(form).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/subscribe", "raw_path": b"/subscribe", "query_string": b"",
        "root_path": "", "client": ("192.0.2.1", 5000), "server": ("testserver", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
            (b"cookie", f"{FormGuard.COOKIE}={cookie}".encode()),
        ],
    }  # fmt: skip
    answered: list[Seen] = []
    answer = bytearray()

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))
            if not message.get("more_body"):
                answered.append(seen(site, smtp_server, email))

    asyncio.run(create_app(site, clock=clock)(scope, receive, send))
    (at_answer,) = answered
    return at_answer, seen(site, smtp_server, email), bytes(answer)


def test_the_answer_goes_before_anything_that_depends_on_the_address(
    web_site: Site, smtp_server: TestSMTPServer, clock: Clock
) -> None:
    """The answer's timing must not tell a stranger the address's state (a confirmed address
    used to answer in a quarter of a new one's time): nothing is written and no email is sent
    until the answer has gone, whatever the state; then each gets what it should."""
    member(web_site, "confirmed@example.org")
    subscribers.add(web_site, "pending@example.org", ["all-members"], now=NOW)
    left_id = member(web_site, "left@example.org")
    subscribers.unsubscribe(web_site, left_id, method="admin", now=NOW)
    member(web_site, "erased@example.org")
    erasure.erase(web_site, "erased@example.org", now=NOW)
    clock.now = NOW + timedelta(hours=25)
    answers, emailed = set(), []
    for email in ("new", "pending", "confirmed", "left", "erased"):
        address = f"{email}@example.org"
        before = seen(web_site, smtp_server, address)
        at_answer, after, answer = post_watching(web_site, smtp_server, address, clock)
        assert at_answer == before, address
        assert b"Check your inbox" in answer
        answers.add(answer)
        if after.messages > before.messages:
            emailed.append(email)
        assert after.events > before.events or email == "confirmed", address
    assert len(answers) == 1
    assert emailed == ["new", "pending", "left", "erased"]  # a confirmed address needs none


def test_at_most_one_confirmation_a_day(
    client: TestClient, smtp_server: TestSMTPServer, clock: Clock
) -> None:
    for hours in (0, 1, 23):
        clock.now = NOW + timedelta(hours=hours)
        subscribe(client, "ann@example.org")
    assert len(smtp_server.messages) == 1
    clock.now = NOW + timedelta(hours=25)
    subscribe(client, "ann@example.org")
    assert len(smtp_server.messages) == 2


def test_honeypot_filled_answers_the_same_and_does_nothing(
    client: TestClient, web_site: Site, smtp_server: TestSMTPServer
) -> None:
    normal = subscribe(client, "human@example.org")
    trapped = subscribe(client, "bot@example.org", website="http://spam.example")
    assert trapped == normal
    assert statuses(web_site, "bot@example.org") == {}
    assert [m.rcpt_tos for m in smtp_server.messages] == [["human@example.org"]]


def test_csrf_token_is_required_and_bound_to_the_cookie(
    client: TestClient, web_site: Site, web_site_other_client: TestClient
) -> None:
    data = {"email": "ann@example.org", "lists": "all-members"}
    assert client.post("/subscribe", data=data).status_code == 400  # no token
    client.get("/")
    assert client.post("/subscribe", data={**data, "form_token": "forged"}).status_code == 400
    # a token another visitor was given does not go with this browser's cookie
    stolen = form_token(web_site_other_client.get("/").text)
    answer = client.post("/subscribe", data={**data, "form_token": stolen})
    assert answer.status_code == 400 and "try again" in answer.text
    client.cookies.clear()  # a cross-site post carries no cookie (SameSite=Strict)
    stolen_with_cookie = form_token(client.get("/").text)
    client.cookies.clear()
    assert (
        client.post("/subscribe", data={**data, "form_token": stolen_with_cookie}).status_code
        == 400
    )
    assert statuses(web_site, "ann@example.org") == {}


@pytest.fixture
def web_site_other_client(web_site: Site, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(web_site, clock=clock)) as other:
        yield other


def test_expired_form_token_is_refused(client: TestClient, clock: Clock) -> None:
    token = form_token(client.get("/").text)
    clock.now = NOW + timedelta(hours=13)
    answer = client.post(
        "/subscribe", data={"form_token": token, "email": "a@example.org", "lists": "all-members"}
    )
    assert answer.status_code == 400
    assert form_token(answer.text) != token  # a fresh form to try again with


def test_rate_limit_per_client(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_WEB_SUBSCRIBE_RATE", "3/hour")
    limited = Site.open(site_dir)
    clock = Clock()
    try:
        with TestClient(create_app(limited, clock=clock)) as client:
            codes = []
            for n in range(5):
                page = client.get("/")
                data = {"form_token": form_token(page.text), "email": f"p{n}@example.org"}
                codes.append(client.post("/subscribe", data={**data, "lists": "all-members"}))
            assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
            assert int(codes[3].headers["retry-after"]) <= 3600
            assert len(smtp_server.messages) == 3
            clock.now = NOW + timedelta(hours=1, seconds=1)
            assert "Check your inbox" in subscribe(client, "later@example.org")
    finally:
        limited.close()


def test_private_list_cannot_be_joined_by_posting_its_slug(
    client: TestClient, web_site: Site, smtp_server: TestSMTPServer
) -> None:
    texts = {}
    for chosen in (["clp-secretaries"], ["all-members", "clp-secretaries"], ["no-such-list"]):
        page = client.get("/")
        data = {"form_token": form_token(page.text), "email": "x@example.org", "lists": chosen}
        answer = client.post("/subscribe", data=data)
        assert answer.status_code == 400 and "unknown list" in answer.text
        assert "(lists: all-members, disability-group)" in answer.text  # the public ones only
        assert "CLP secretaries" not in answer.text
        texts[" ".join(chosen)] = answer.text
    assert "clp-secretaries" not in texts["no-such-list"]
    # a private list is refused exactly as a list that does not exist
    assert texts["clp-secretaries"] == texts["no-such-list"].replace(
        "no-such-list", "clp-secretaries"
    )
    assert statuses(web_site, "x@example.org") == {}
    assert smtp_server.messages == []


def test_bad_input_is_shown_beside_the_form(client: TestClient) -> None:
    page = client.get("/")
    token = form_token(page.text)
    bad = client.post(
        "/subscribe", data={"form_token": token, "email": "not an address", "lists": "all-members"}
    )
    assert bad.status_code == 400 and "is not an email address" in bad.text
    assert 'value="not an address"' in bad.text
    none = client.post("/subscribe", data={"form_token": token, "email": "a@example.org"})
    assert none.status_code == 400 and "Choose at least one list" in none.text
    injected = client.post(
        "/subscribe",
        data={
            "form_token": token,
            "email": "a@example.org",
            "name": "A\r\nBcc: x@evil.example",
            "lists": "all-members",
        },
    )
    assert injected.status_code == 400 and "line break" in injected.text


def test_expired_confirmation_offers_a_new_email(
    client: TestClient, web_site: Site, smtp_server: TestSMTPServer, clock: Clock
) -> None:
    subscribe(client, "ann@example.org")
    token = link(smtp_server)
    clock.now = NOW + timedelta(hours=73)
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 410 and "expired" in page.text
    assert client.post(f"/confirm/{token}").status_code == 410
    assert set(statuses(web_site, "ann@example.org").values()) == {"pending"}
    resent = client.post(f"/confirm/{token}", data={"action": "resend"})
    assert "Check your inbox" in resent.text
    assert len(smtp_server.messages) == 2
    assert client.post(f"/confirm/{link(smtp_server)}").status_code == 200
    assert set(statuses(web_site, "ann@example.org").values()) == {"confirmed"}


# -- unsubscribe ------------------------------------------------------------------------------


def test_one_click_unsubscribe_urlencoded_without_cookies(
    client: TestClient, web_site: Site
) -> None:
    person = member(web_site, "ann@example.org", "all-members", "disability-group")
    token = unsubscribe_token(web_site, person, "ann@example.org")
    page = client.get(f"/unsubscribe/{token}")  # GET: a page with a button, nothing changed
    assert page.status_code == 200 and "<button" in page.text
    assert set(statuses(web_site, "ann@example.org").values()) == {"confirmed"}
    client.cookies.clear()
    answer = client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and not answer.is_redirect
    assert set(statuses(web_site, "ann@example.org").values()) == {"unsubscribed"}
    with transaction(web_site.engine) as session:
        methods = session.scalars(
            select(ConsentEvent.method).where(ConsentEvent.kind == "unsubscribed")
        ).all()
    assert methods == ["one-click", "one-click"]
    again = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200  # twice changes nothing and is not an error


def test_a_burst_of_one_click_unsubscribes_each_gets_its_own_answer(web_site: Site) -> None:
    """Requests arriving together share a transaction (groupcommit.py); a forged token among
    them is refused on its own and changes nothing."""
    people = {f"m{n}@example.org": member(web_site, f"m{n}@example.org") for n in range(6)}
    urls = [f"/unsubscribe/{unsubscribe_token(web_site, p, e)}" for e, p in people.items()]
    forged = tokens.make(
        web_site.config, "unsubscribe",
        naming(web_site, people["m5@example.org"], "m0@example.org"), now=NOW,
    )  # fmt: skip
    urls[5] = f"/unsubscribe/{forged}"

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=create_app(web_site, clock=Clock()))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answers = await asyncio.gather(
                *(http.post(url, data={"List-Unsubscribe": "One-Click"}) for url in urls)
            )
        return [answer.status_code for answer in answers]

    assert asyncio.run(burst()) == [200] * 5 + [400]
    left = {email: set(statuses(web_site, email).values()) for email in people}
    assert left == {**{e: {"unsubscribed"} for e in people}, "m5@example.org": {"confirmed"}}
    with transaction(web_site.engine) as session:
        events = session.scalars(
            select(ConsentEvent.subscriber_id).where(ConsentEvent.kind == "unsubscribed")
        ).all()
    assert sorted(e or 0 for e in events) == sorted(list(people.values())[:5])


def test_while_another_process_writes_one_clicks_wait_in_a_thread_not_the_loop(
    web_site: Site,
) -> None:
    """On SQLite a group commit runs in the event loop only if the write lock is free: while
    another writer holds it (a mailing being frozen), the group waits in a worker thread and
    the server goes on answering."""
    if web_site.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single writer")
    person = member(web_site, "ann@example.org")
    url = f"/unsubscribe/{unsubscribe_token(web_site, person, 'ann@example.org')}"
    other = sqlite3.connect(web_site.engine.url.database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process's write transaction

    async def meanwhile() -> tuple[int, float, float]:
        transport = httpx.ASGITransport(app=create_app(web_site, clock=Clock()))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            started = asyncio.get_running_loop().time()
            asyncio.get_running_loop().call_later(1.0, other.commit)  # it finishes in a second
            leaving = asyncio.ensure_future(http.post(url, data={"List-Unsubscribe": "One-Click"}))
            await asyncio.sleep(0.1)
            assert (await http.get("/healthz")).status_code == 200
            answered = asyncio.get_running_loop().time() - started
            answer = await leaving
            return answer.status_code, answered, asyncio.get_running_loop().time() - started

    status, healthz_after, unsubscribed_after = asyncio.run(meanwhile())
    other.close()
    assert status == 200 and set(statuses(web_site, "ann@example.org").values()) == {"unsubscribed"}
    assert healthz_after < 0.8  # answered while the lock was still held
    assert unsubscribed_after >= 1.0  # carried out once the other writer let go


def test_one_click_unsubscribe_multipart(client: TestClient, web_site: Site) -> None:
    person = member(web_site, "ann@example.org")
    token = unsubscribe_token(web_site, person, "ann@example.org")
    answer = client.post(
        f"/unsubscribe/{token}",
        files={"List-Unsubscribe": (None, "One-Click")},  # multipart/form-data, no file
    )
    assert answer.status_code == 200
    assert set(statuses(web_site, "ann@example.org").values()) == {"unsubscribed"}


def test_unsubscribe_button_on_the_page_is_method_link(client: TestClient, web_site: Site) -> None:
    person = member(web_site, "ann@example.org")
    token = unsubscribe_token(web_site, person, "ann@example.org")
    answer = client.post(f"/unsubscribe/{token}")
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    with transaction(web_site.engine) as session:
        event = session.scalars(
            select(ConsentEvent).where(ConsentEvent.kind == "unsubscribed")
        ).one()
    assert event.method == "link" and event.ip == "testclient" and event.user_agent == UA


def bad_tokens(site: Site, person: int, email: str, other: int) -> dict[str, str]:
    good = unsubscribe_token(site, person, email)
    body = good.split(".", 1)[1]
    other_key = tokens.key_id("some other key")
    return {
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "truncated": good[: len(good) // 2],
        "other purpose": preferences_token(site, person, email),
        "confirm token": tokens.make(site.config, "confirm", naming(site, person, email), now=NOW),
        "another address": tokens.make(
            site.config, "unsubscribe", naming(site, other, email), now=NOW
        ),
        "no such subscriber": tokens.make(
            site.config, "unsubscribe", naming(site, 99999, email), now=NOW
        ),
        "unknown key": f"{other_key}.{body}",
        "no key id": body,
        "garbage": "hello",
        "long": "a" * 3000,
    }


def test_every_bad_token_gets_the_same_answer_and_changes_nothing(
    client: TestClient, web_site: Site
) -> None:
    person = member(web_site, "ann@example.org")
    other = member(web_site, "bob@example.org")
    before = {e: statuses(web_site, e) for e in ("ann@example.org", "bob@example.org")}
    answers = set()
    for name, token in bad_tokens(web_site, person, "ann@example.org", other).items():
        for route in ("unsubscribe", "confirm", "preferences"):
            if name == "other purpose" and route == "preferences":
                continue  # it is a good preferences token
            if name == "confirm token" and route == "confirm":
                continue
            url = f"/{route}/{token}"
            for answer in (
                client.get(url),
                client.post(url, data={"List-Unsubscribe": "One-Click"}),
                client.post(url, data={"action": "erase-confirmed"}),
            ):
                assert answer.status_code == 400, (name, route, answer.text)
                answers.add(answer.text)
    assert len(answers) == 1
    assert {e: statuses(web_site, e) for e in before} == before


def test_links_made_before_an_erasure_never_work_again(
    client: TestClient, web_site: Site, smtp_server: TestSMTPServer, clock: Clock
) -> None:
    """SQLite gives a deleted row's id to the next row: after an erasure, the same address
    subscribing again may get the very same id. Old links named the erased row's token key,
    which went with it."""
    person = member(web_site, "ann@example.org")
    who = naming(web_site, person, "ann@example.org")
    old = {
        "unsubscribe": unsubscribe_token(web_site, person, "ann@example.org"),
        "preferences": preferences_token(web_site, person, "ann@example.org"),
        "confirm": tokens.make(web_site.config, "confirm", who, now=NOW, ttl=timedelta(hours=72)),
    }
    erasure.erase(web_site, "ann@example.org", now=NOW)
    smtp_server.reset()
    subscribe(client, "ann@example.org")  # she comes back, on the web form, and confirms
    assert client.post(f"/confirm/{link(smtp_server)}").status_code == 200
    assert set(statuses(web_site, "ann@example.org").values()) == {"confirmed"}
    with transaction(web_site.engine) as session:
        again = session.scalars(select(Subscriber.id)).one()
    if web_site.engine.dialect.name == "sqlite":
        assert again == person  # the id came back: the case this guards against
    for route, token in old.items():
        assert client.get(f"/{route}/{token}").status_code == 400, route
        for data in ({"List-Unsubscribe": "One-Click"}, {"action": "erase-confirmed"}, {}):
            assert client.post(f"/{route}/{token}", data=data).status_code == 400, route
    assert set(statuses(web_site, "ann@example.org").values()) == {"confirmed"}
    fresh = unsubscribe_token(web_site, again, "ann@example.org")
    assert client.post(f"/unsubscribe/{fresh}", data={"List-Unsubscribe": "One-Click"}).is_success
    assert set(statuses(web_site, "ann@example.org").values()) == {"unsubscribed"}


def test_old_links_work_after_the_key_is_rotated(
    web_site: Site, site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = member(web_site, "ann@example.org")
    old_token = unsubscribe_token(web_site, person, "ann@example.org")
    assert old_token.split(".")[0] == tokens.key_id(TEST_SECRET)
    monkeypatch.setenv("NEWSROOM_SECRET_KEY", "a-brand-new-key-after-rotation")
    monkeypatch.setenv("NEWSROOM_SECRET_OLD_KEYS", TEST_SECRET)
    rotated = Site.open(site_dir)
    try:
        with TestClient(create_app(rotated)) as client:
            answer = client.post(
                f"/unsubscribe/{old_token}", data={"List-Unsubscribe": "One-Click"}
            )
            assert answer.status_code == 200
        assert set(statuses(rotated, "ann@example.org").values()) == {"unsubscribed"}
    finally:
        rotated.close()
    monkeypatch.delenv("NEWSROOM_SECRET_OLD_KEYS")
    forgotten = Site.open(site_dir)  # the old key dropped: its links stop working
    try:
        with TestClient(create_app(forgotten)) as client:
            assert client.get(f"/unsubscribe/{old_token}").status_code == 400
    finally:
        forgotten.close()


# -- preferences ------------------------------------------------------------------------------


def test_preferences_choose_lists_and_leave_everything(
    client: TestClient, web_site: Site, smtp_server: TestSMTPServer, clock: Clock
) -> None:
    person = member(web_site, "ann@example.org", "all-members", "clp-secretaries")
    clock.now = NOW + timedelta(days=2)  # past the one-confirmation-a-day limit of member()
    token = preferences_token(web_site, person, "ann@example.org")
    page = client.get(f"/preferences/{token}")
    assert page.status_code == 200
    assert "CLP secretaries" in page.text  # private, but she is on it
    assert page.headers["referrer-policy"] == "no-referrer"
    saved = client.post(
        f"/preferences/{token}",
        data={"action": "save", "lists": ["all-members", "disability-group"]},
    )
    assert saved.status_code == 200 and "confirm the new lists" in saved.text
    after = statuses(web_site, "ann@example.org")
    assert sorted(after.values()) == ["confirmed", "pending", "unsubscribed"]
    assert len(smtp_server.to("ann@example.org")) == 2  # the one from member() and this one
    # a private list she is no longer on cannot be chosen again from here
    refused = client.post(
        f"/preferences/{token}", data={"action": "save", "lists": ["clp-secretaries"]}
    )
    assert refused.status_code == 400 and "unknown list" in refused.text
    left = client.post(f"/preferences/{token}", data={"action": "leave"})
    assert "You have left every list" in left.text
    assert set(statuses(web_site, "ann@example.org").values()) == {"unsubscribed"}


def test_preferences_download_my_data(client: TestClient, web_site: Site) -> None:
    person = member(web_site, "ann@example.org")
    token = preferences_token(web_site, person, "ann@example.org")
    answer = client.post(f"/preferences/{token}", data={"action": "download"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert "attachment" in answer.headers["content-disposition"]
    data = json.loads(answer.text)
    assert data["subscriber"]["email"] == "ann@example.org"
    assert [s["list"] for s in data["subscriptions"]] == ["all-members"]
    assert [e["kind"] for e in data["ledger"]] == ["requested"]
    assert client.get(f"/preferences/{token}").status_code == 200  # GET never downloads


def test_erase_needs_a_confirmation_step(client: TestClient, web_site: Site) -> None:
    person = member(web_site, "ann@example.org")
    token = preferences_token(web_site, person, "ann@example.org")
    step = client.post(f"/preferences/{token}", data={"action": "erase"})
    assert step.status_code == 200 and "Yes, erase me" in step.text
    assert statuses(web_site, "ann@example.org") != {}  # not yet
    done = client.post(f"/preferences/{token}", data={"action": "erase-confirmed"})
    assert done.status_code == 200 and "erased" in done.text
    assert statuses(web_site, "ann@example.org") == {}
    assert client.get(f"/preferences/{token}").status_code == 400  # the link is dead now


# -- the guards -------------------------------------------------------------------------------


def test_large_bodies_are_refused(client: TestClient) -> None:
    answer = client.post("/subscribe", content=b"x" * 100_000)
    assert answer.status_code == 413


def test_unknown_pages_are_404_with_headers(client: TestClient) -> None:
    answer = client.get("/no/such/page")
    assert answer.status_code == 404 and "Page not found" in answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert client.delete("/subscribe").status_code == 405


def test_tokens_are_redacted_from_log_lines() -> None:
    line = '127.0.0.1:5 - "POST /unsubscribe/abc.def-GH_i HTTP/1.1" 200 and /confirm/x.y?z=1'
    assert redact(line) == (
        '127.0.0.1:5 - "POST /unsubscribe/[token] HTTP/1.1" 200 and /confirm/[token]?z=1'
    )
    assert redact("/preferences/t/") == "/preferences/[token]/"
    assert redact("/issues/slug/") == "/issues/slug/"


@pytest.mark.parametrize(
    ("path", "redacted"),
    [
        ("/UNSUBSCRIBE/abc.def", "/UNSUBSCRIBE/[token]"),
        ("/Confirm/abc.def?x=1", "/Confirm/[token]?x=1"),
        ("/pReFeReNcEs/abc.def/", "/pReFeReNcEs/[token]/"),
        ("/%75nsubscribe/abc.def", "/%75nsubscribe/[token]"),  # %75 is u
        ("/%55NSUBSCRIBE/abc.def", "/%55NSUBSCRIBE/[token]"),
        ("/c%6Fnfirm%2fabc.def", "/c%6Fnfirm%2f[token]"),  # an encoded slash too
        ("/%2575nsubscribe/abc.def", "/%2575nsubscribe/[token]"),  # encoded twice
        ("/unsubscribe/abc%2Edef", "/unsubscribe/[token]"),  # an encoded token
        ("/?next=%2Fpreferences%2Fabc.def", "/?next=%2Fpreferences%2F[token]"),
    ],
)
def test_tokens_are_redacted_whatever_the_spelling(path: str, redacted: str) -> None:
    assert redact(f'- "GET {path} HTTP/1.1" 404') == f'- "GET {redacted} HTTP/1.1" 404'


def test_method_not_allowed_says_which_are(client: TestClient) -> None:
    """RFC 9110 section 15.5.6: a 405 carries Allow; /subscribe is one route for GET and POST,
    so its Allow names both."""
    for method, path, allowed in (
        ("DELETE", "/subscribe", {"GET", "HEAD", "POST"}),
        ("PUT", "/feed.xml", {"GET", "HEAD"}),
        ("PATCH", "/unsubscribe/x.y.z", {"GET", "HEAD", "POST"}),
    ):
        answer = client.request(method, path)
        assert answer.status_code == 405
        assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_slash_redirect_never_names_the_request_host(client: TestClient) -> None:
    evil = {"Host": "evil.example"}
    answer = client.get("/issues/some-issue", headers=evil)
    assert answer.status_code == 307 and answer.headers["location"] == "/issues/some-issue/"
    answer = client.get("/feed.xml/?x=1", headers=evil)
    assert answer.status_code == 307 and answer.headers["location"] == "/feed.xml?x=1"
    assert client.get("/no/such/page/", headers=evil).status_code == 404


def test_the_slash_redirect_keeps_the_base_urls_path(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a proxy serving newsroom under a path, the redirect stays under it."""
    monkeypatch.setenv("NEWSROOM_SITE_BASE_URL", "https://example.org/news/")
    prefixed = Site.open(site_dir)
    try:
        with TestClient(create_app(prefixed, clock=Clock()), follow_redirects=False) as client:
            answer = client.get("/issues/some-issue", headers={"Host": "evil.example"})
        assert answer.headers["location"] == "/news/issues/some-issue/"
    finally:
        prefixed.close()
