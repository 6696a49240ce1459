"""The subscribe form's rate limit kept in the database, so that every web server of a site on
PostgreSQL counts one client's requests together (issue #17, item 2)."""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert

from newsroom.errors import ConfigError
from newsroom.models import ClientWindow
from newsroom.settings import parse_rate
from newsroom.site import Site


class ClientWindows:
    """At most N requests per window per client, like security.ClientLimit, but in the table
    client_windows. Each window of the rate (aligned to the epoch) has one row per client,
    keyed by an HMAC of the client's address and the window under the site's secret key: the
    table never holds an address, and two windows of one client cannot be linked.

    A sliding window counted in two fixed ones: the previous window's count weighs as much as
    the sliding window still covers of it, rounded up, so requests just before a window's end
    still count in full just after it. A request is counted only if allowed, in one statement
    (INSERT ... ON CONFLICT DO UPDATE ... WHERE, which PostgreSQL evaluates under the row's
    lock), so two servers at once never both take the last place."""

    def __init__(self, site: Site, rate: str, where: str = "web.subscribe_rate") -> None:
        parsed = parse_rate(rate)
        if parsed is None:
            raise ConfigError(f"{where}: {rate!r} must look like 10/hour (a number above 0)")
        self.limit, self.window = parsed
        self.engine = site.engine
        self.secret = site.config.secret_key.encode()
        self.swept = -1  # the last window in which this process deleted the expired rows

    def key(self, client: str, index: int) -> str:
        message = f"client-window\0{self.window}\0{index}\0{client}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def _where(self, now: float) -> tuple[int, float]:
        """The window NOW falls in, and how far into it NOW is (0 to 1)."""
        index = math.floor(now / self.window)
        return index, now / self.window - index

    def _count(self, conn: Connection, client: str, index: int) -> int:
        found = conn.scalar(
            select(ClientWindow.count).where(ClientWindow.key == self.key(client, index))
        )
        return int(found or 0)

    def allow(self, client: str, now: float) -> bool:
        index, into = self._where(now)
        with self.engine.begin() as conn:
            self._sweep(conn, index)
            room = self.limit - math.ceil(self._count(conn, client, index - 1) * (1 - into))
            if room < 1:
                return False
            ends = datetime.fromtimestamp((index + 1) * self.window, UTC)
            row = insert(ClientWindow).values(key=self.key(client, index), ends_at=ends, count=1)
            counted = row.on_conflict_do_update(
                index_elements=[ClientWindow.key],
                set_={"count": ClientWindow.count + 1},
                where=ClientWindow.count < room,
            ).returning(ClientWindow.count)
            return conn.execute(counted).first() is not None

    def retry_after(self, client: str, now: float) -> int:
        """Seconds until CLIENT may try again, if it sends nothing meanwhile."""
        index, _ = self._where(now)
        with self.engine.connect() as conn:
            before = self._count(conn, client, index - 1)
            current = self._count(conn, client, index)
        if current >= self.limit:  # in the next window, weighed down by this one
            at = (index + 1 + 1 - (self.limit - 1) / current) * self.window
        elif before:  # later in this window, when less of the previous one is covered
            at = (index + 1 - (self.limit - current - 1) / before) * self.window
        else:
            return 1
        return max(1, math.ceil(at - now))

    def _sweep(self, conn: Connection, index: int) -> None:
        """Once a window per process: delete the rows of windows before the previous one,
        which no request counts any more."""
        if index == self.swept:
            return
        started = datetime.fromtimestamp(index * self.window, UTC)
        conn.execute(delete(ClientWindow).where(ClientWindow.ends_at < started))
        self.swept = index
