"""The subscribe form's rate limit kept in the database, so that every web server of a site on
PostgreSQL counts one client's requests together (issue #17, item 2)."""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from newsroom.errors import ConfigError
from newsroom.models import ClientWindow
from newsroom.settings import parse_rate
from newsroom.site import Site

SLOTS = 60  # a request counts for the window to within a sixtieth of it


class ClientWindows:
    """At most N requests per window per client, like security.ClientLimit, but in the table
    client_windows, where every server of the site counts them.

    The window slides in SLOTS steps: a client's allowed requests are counted per slot of the
    window (aligned to the epoch), one row per client and slot, keyed by an HMAC of the client's
    address and the slot under the site's secret key. The table never holds an address, two
    rows of one client cannot be linked, and at most N rows are kept per client. A request
    counts until SLOTS slots have begun after its own; its row then goes.

    The count and the write happen under a transaction-scoped advisory lock of the client (its
    number is also an HMAC): two servers at once never both take a client's last place."""

    def __init__(self, site: Site, rate: str, where: str = "web.subscribe_rate") -> None:
        parsed = parse_rate(rate)
        if parsed is None:
            raise ConfigError(f"{where}: {rate!r} must look like 10/hour (a number above 0)")
        self.limit, window = parsed
        self.slot = window / SLOTS
        self.engine = site.engine
        self.secret = site.config.secret_key.encode()
        self.swept = -1  # the last slot in which this process deleted the expired rows

    def _digest(self, *parts: object) -> bytes:
        message = "\0".join(str(part) for part in ("client-window", self.slot, *parts))
        return hmac.new(self.secret, message.encode(), hashlib.sha256).digest()

    def key(self, client: str, index: int) -> str:
        """The row key of CLIENT's slot INDEX."""
        return self._digest("slot", index, client).hex()

    def _counted(self, client: str, now: float) -> tuple[int, list[str]]:
        """The slot NOW falls in, and the keys of CLIENT's slots that still count at NOW."""
        index = math.floor(now / self.slot)
        return index, [self.key(client, i) for i in range(index - SLOTS + 1, index + 1)]

    def allow(self, client: str, now: float) -> bool:
        index, keys = self._counted(client, now)
        lock = int.from_bytes(self._digest("lock", client)[:8], "big", signed=True)
        with self.engine.begin() as conn:
            self._sweep(conn, index, now)
            conn.execute(select(func.pg_advisory_xact_lock(lock)))
            made = conn.scalar(
                select(func.coalesce(func.sum(ClientWindow.count), 0)).where(
                    ClientWindow.key.in_(keys)
                )
            )
            if int(made or 0) >= self.limit:
                return False
            ends = datetime.fromtimestamp((index + SLOTS) * self.slot, UTC)
            row = insert(ClientWindow).values(key=keys[-1], ends_at=ends, count=1)
            conn.execute(
                row.on_conflict_do_update(
                    index_elements=[ClientWindow.key], set_={"count": ClientWindow.count + 1}
                )
            )
        return True

    def retry_after(self, client: str, now: float) -> int:
        """Seconds until CLIENT's oldest counted request stops counting."""
        _, keys = self._counted(client, now)
        with self.engine.connect() as conn:
            first = conn.scalar(
                select(func.min(ClientWindow.ends_at)).where(ClientWindow.key.in_(keys))
            )
        return max(1, math.ceil(first.timestamp() - now)) if first else 1

    def _sweep(self, conn: Connection, index: int, now: float) -> None:
        """Once a slot per process: delete the rows that no request counts any more."""
        if index == self.swept:
            return
        conn.execute(
            delete(ClientWindow).where(ClientWindow.ends_at <= datetime.fromtimestamp(now, UTC))
        )
        self.swept = index
