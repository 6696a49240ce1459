"""The consent ledger is append-only: only erasure touches existing events, and only to strip
personal data."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from newsroom.database import transaction
from newsroom.models import ConsentEvent, ConsentKind, ConsentText
from newsroom.people import consent
from newsroom.people.consent import Origin
from newsroom.site import Site

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
PACKAGE = Path(consent.__file__).parents[1]  # the whole newsroom package


def test_consent_texts_are_stored_once_by_hash(site: Site) -> None:
    with transaction(site.engine) as session:
        first = consent.current_text(session, site.config)
        again = consent.current_text(session, site.config)
        assert first.id == again.id
        assert first.text.startswith("I want to receive emails from Test Newsroom")
        assert first.sha256 == consent.text_digest(first.text) and first.version == "1"
        other = consent.consent_text(session, "Another text", "2")
        assert other.id != first.id
        assert len(session.scalars(select(ConsentText)).all()) == 2


def test_events_are_appended_with_time_source_and_client(site: Site) -> None:
    origin = Origin("web", "link", "192.0.2.1", "UA " * 1000)
    with transaction(site.engine) as session:
        consent.record(
            session, ConsentKind.REQUESTED, subscriber_id=None, list_id=None, origin=origin, now=NOW
        )
        event = session.scalars(select(ConsentEvent)).one()
        assert (event.kind, event.source, event.method, event.ip) == (
            "requested",
            "web",
            "link",
            "192.0.2.1",
        )
        assert event.at == NOW and len(event.user_agent or "") == 1000


def test_no_code_updates_or_deletes_events_except_forget() -> None:
    """Scan the package: ConsentEvent appears in update()/delete() only inside consent.forget."""
    offenders = []
    for path in sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("update", "delete")
                    and any(isinstance(a, ast.Name) and a.id == "ConsentEvent" for a in node.args)
                    and (path.name, function.name) != ("consent.py", "forget")
                ):
                    offenders.append(f"{path.name}:{node.lineno} in {function.name}")
        text = path.read_text(encoding="utf-8")
        assert "consent_events" not in text.replace('__tablename__ = "consent_events"', ""), path
    assert offenders == []


def test_forget_strips_personal_data_and_keeps_the_event(site: Site) -> None:
    from newsroom.models import Subscriber

    with transaction(site.engine) as session:
        person = Subscriber(email="ann@example.org", created_at=NOW)
        session.add(person)
        session.flush()
        origin = Origin("web", "form", "192.0.2.1", "Firefox")
        consent.record(
            session,
            ConsentKind.REQUESTED,
            subscriber_id=person.id,
            list_id=None,
            origin=origin,
            now=NOW,
        )
        consent.forget(session, person.id)
        event = session.scalars(select(ConsentEvent)).one()
        assert (event.subscriber_id, event.ip, event.user_agent) == (None, None, None)
        assert (event.kind, event.source, event.at) == ("requested", "web", NOW)
