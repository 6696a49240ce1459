"""changes.py: a sender hears of every commit that may shrink an audience, on either database."""

from __future__ import annotations

import time

from newsroom.delivery.changes import Changes
from newsroom.models import utcnow
from newsroom.people import subscribers
from newsroom.people.consent import Origin
from newsroom.site import Site
from tests.sendhelp import subscribe


def heard(changes: Changes) -> bool:
    """Whether CHANGES hears of a commit just made: at once on SQLite; on PostgreSQL the NOTIFY
    reaches the listening socket a moment after the commit returns."""
    deadline = time.monotonic() + 10
    while not changes.changed():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def test_an_unsubscribe_by_any_path_shows(site: Site) -> None:
    subscribe(site, 2)
    changes = Changes(site.engine)
    try:
        assert not changes.changed()
        subscribers.remove(site, "p0@example.net", now=utcnow())  # the ORM path (consent.record)
        assert heard(changes)
        assert not changes.changed()  # asked again: nothing new
        token = subscribers.unsubscribe_token(site, 2, "p1@example.net", None, now=utcnow())
        leaving = subscribers.Leaving(token, Origin("web", "one-click"), utcnow())
        assert subscribers.unsubscribe_by_tokens(site, [leaving]) == [["all-members"]]
        assert heard(changes)  # the one-click path (prepared statements, group commit)
        assert not changes.changed()
    finally:
        changes.close()
