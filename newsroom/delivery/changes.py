"""Whether anything was committed to the database since a sender last looked.

A sender asks right before every message, so that an unsubscribe committed while a batch is
being sent stops the very next message to that address (DESIGN: "an unsubscribe that arrives
while a mailing is under way stops every later message"); only when the answer is yes does it
re-check who is still in the audience. The question has to cost next to nothing:

- SQLite: `PRAGMA data_version` on a connection of the sender's own changes whenever another
  connection has committed (https://www.sqlite.org/pragma.html#pragma_data_version); about 2 µs,
  no I/O.
- PostgreSQL: every change of a subscription appends a consent event, and whoever appends one
  also sends NOTIFY in the same transaction (consent.py), which PostgreSQL delivers at commit.
  The sender LISTENs on a connection of its own and asks that socket, without waiting, whether
  anything came: about 1 µs. (A query per message would be a round trip, about 28 µs.)
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import Engine

from newsroom.delivery.senders import is_sqlite
from newsroom.people.consent import CHANGED_CHANNEL


class Changes:
    """One sender's watch on the database; `changed()` says whether anything was committed
    since it was last asked."""

    def __init__(self, engine: Engine) -> None:
        self.sqlite = is_sqlite(engine)
        self.proxied = engine.raw_connection()
        driver = self.proxied.driver_connection
        assert driver is not None
        self.proxied.detach()  # ours alone: never back in the pool with LISTEN on
        self.connection: Any = driver
        if self.sqlite:
            self.cursor = self.connection.cursor()
            self.version = self._version()
        else:
            self.connection.autocommit = True
            self.connection.execute(f"LISTEN {CHANGED_CHANNEL}")
            self.fileno = self.connection.fileno()

    def _version(self) -> int:
        self.cursor.execute("PRAGMA data_version")
        return int(self.cursor.fetchone()[0])

    def changed(self) -> bool:
        if self.sqlite:
            version, self.version = self.version, self._version()
            return version != self.version
        readable, _, _ = select.select([self.fileno], [], [], 0)
        if not readable:
            return False
        for _notice in self.connection.notifies(timeout=0):
            pass  # drained: one re-check answers them all
        return True

    def close(self) -> None:
        self.proxied.close()
