"""The site's sending rates kept by all its senders together, through the database (issue #17).

`sending.rate` and `sending.domain_rates` are what the relay allows the *site*: on PostgreSQL
every sender — `newsroom send`, its helpers, any number of `newsroom worker`s on any number of
machines — takes its messages' slots from one row per rate in `send_windows`. A slot is an
instant, 1/RATE after the one before; the row holds the first instant nobody has reserved.

A sender reserves a few slots at a time with one UPDATE, on the database's clock (machines'
clocks may disagree; the database's is the one they share), and spends them itself: a message
waits until its slot's instant, converted to this process's monotonic clock by the offset
measured on that round trip. A slot not spent in time (LATE) is lost, never saved up, so no
window ever sees more than the rate; and a dead sender's share comes back to the others as soon
as its reserved slots have passed (at most SPAN seconds), with no lease to expire.

How many slots a reservation takes follows how many the last one used (at most SPAN seconds'
worth): a sender that keeps up reserves whole spans, one round trip per SPAN seconds, and one
held back by a domain's rate reserves few, so that it holds no run of the overall rate that
the other senders then wait through.

On SQLite one sender runs at a time (senders.py) with its helpers on the same machine: they
keep the rates in their own memory, each its part (`ratelimit.RateLimiter.from_config`), and
never take the database's write lock to pace themselves. (The reservation itself works on
SQLite too, on SQLite's clock: the tests check its arithmetic on both databases.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from newsroom.mail.ratelimit import Limiter, RateLimiter, domain_rates, per_second
from newsroom.settings import Config

SPAN = 0.1  # seconds of a rate a sender reserves at most at once: one round trip per SPAN
LATE = 0.02  # a slot is still spent this long after its instant; later, it is lost
# NTP daemons slew a clock by at most 500 ppm (ntpd's and chrony's default maximum), so an
# offset between this machine's monotonic clock and the database's measured T seconds ago may
# be off by that much times T.
DRIFT = 500e-6
OVERALL = ""  # the key of `sending.rate`; a domain's rate is keyed by the domain

_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",  # SQLite 3.40 has no subsec epoch
}
_RESERVE = (
    "UPDATE send_windows SET free_at = {most}(free_at, {now}) + :span WHERE key = :key "
    "RETURNING free_at, {now}"
)
_CREATE = "INSERT INTO send_windows (key, free_at) VALUES (:key, 0) ON CONFLICT DO NOTHING"


def limiter(engine: Engine, config: Config, share: int = 1) -> Limiter:
    """The pace a sender keeps: the site's on PostgreSQL; on SQLite its SHARE of the rates,
    as one of SHARE processes sending a mailing together (the sender and its helpers)."""
    if engine.dialect.name == "sqlite":
        return RateLimiter.from_config(config, share=share)
    return SitePace.from_config(engine, config)


@dataclass(frozen=True)
class Block:
    """COUNT slots reserved at once: the first at START (seconds on the database's clock),
    then one every INTERVAL; NOW is the database's clock when it answered."""

    start: float
    interval: float
    count: int
    now: float

    def instants(self) -> list[float]:
        return [self.start + i * self.interval for i in range(self.count)]


@dataclass
class _Window:
    """This sender's slots of one rate: those reserved and not yet spent (on the local clock)."""

    key: str
    rate: float
    slots: deque[float] = field(default_factory=deque)
    used: int = 0  # slots spent of the last reservation
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def most(self) -> int:
        return max(1, int(self.rate * SPAN))

    def wanted(self) -> int:
        """How many slots to reserve next: twice what the last reservation used (a sender
        starting, or held back, asks for few), at most SPAN seconds' worth."""
        return min(self.most, max(1, 2 * self.used))


class SitePace:
    """`wait(address)` before each message: the site's overall rate and the domain's, shared
    with every other sender through `send_windows` (Limiter, as `mail/smtp.Pool` awaits it)."""

    def __init__(
        self,
        engine: Engine,
        rate: float,
        domains: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.overall = _Window(OVERALL, rate)
        self.domains = {d: _Window(d, r) for d, r in (domains or {}).items()}
        dialect = engine.dialect.name
        most = "max" if dialect == "sqlite" else "greatest"
        self._reserve_sql = text(_RESERVE.format(most=most, now=_NOW[dialect]))
        self._connection: Connection | None = None
        self._offset: tuple[float, float, float] | None = None  # local - database, rtt, when
        self._using = threading.Lock()  # reservations run in threads; one at a time

    @classmethod
    def from_config(cls, engine: Engine, config: Config) -> SitePace:
        return cls(
            engine,
            per_second(config.text("sending.rate")),
            domain_rates(config.text("sending.domain_rates")),
        )

    async def wait(self, address: str) -> None:
        """Until a slot of the overall rate and one of the address's domain (if it has a rate)
        are both at hand, neither more than LATE old: a slot that went stale meanwhile (its
        message waited for the other kind, or the loop woke late) is lost, and another of its
        kind taken, so a message never goes on a slot long past."""
        domain = self.domains.get(address.rpartition("@")[2].lower())
        windows = [self.overall] if domain is None else [domain, self.overall]
        held: dict[str, float] = {}
        while True:
            for window in windows:
                if window.key not in held:
                    held[window.key] = await self._slot(window)
            delay = max(held.values()) - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            now = self.clock()
            held = {key: at for key, at in held.items() if now <= at + LATE}
            if len(held) == len(windows):
                return

    async def _slot(self, window: _Window) -> float:
        """The instant (local clock) of this sender's next slot of WINDOW's rate."""
        async with window.lock:
            while True:
                now = self.clock()
                while window.slots and window.slots[0] < now - LATE:
                    window.slots.popleft()  # passed unspent: lost, never saved up
                if window.slots:
                    window.used += 1
                    return window.slots.popleft()
                count = window.wanted()
                window.used = 0
                window.slots.extend(await asyncio.to_thread(self._local, window, count))

    def _local(self, window: _Window, count: int) -> list[float]:
        """COUNT slots of WINDOW reserved, on this process's clock."""
        asked = self.clock()
        block = self.reserve(window.key, count, window.rate)
        answered = self.clock()
        # The database read its clock somewhere within the round trip, so the middle is off
        # by at most half of it: keep the offset of the quickest round trip (a slow one took
        # 0.2 s on a loaded machine, in tests/test_sitepace.py's rate tests), unless the clocks may have drifted
        # apart by more since (DRIFT) than the new round trip is slower.
        rtt = answered - asked
        if self._offset is None or rtt <= self._offset[1] + DRIFT * (asked - self._offset[2]):
            self._offset = ((asked + answered) / 2 - block.now, rtt, asked)
        return [instant + self._offset[0] for instant in block.instants()]

    def reserve(self, key: str, count: int, rate: float) -> Block:
        """COUNT slots of the rate KEY at RATE a second (this sender's setting: the rate may
        change between runs), from the first instant nobody has reserved, or now if that has
        passed: one round trip (two the first time a key is used)."""
        span = count / rate
        with self._using:
            for _attempt in range(3):
                try:
                    row = self._execute(key, span)
                except DBAPIError:  # e.g. the database restarted: once more, reconnected
                    self._drop()
                    row = self._execute(key, span)
                if row is not None:
                    free_at, now = float(row[0]), float(row[1])
                    return Block(free_at - span, 1.0 / rate, count, now)
                self._held().execute(text(_CREATE), {"key": key})  # first use of this key
        raise RuntimeError(f"send_windows: no row for {key!r}")  # pragma: no cover

    def _execute(self, key: str, span: float) -> tuple[float, float] | None:
        row = self._held().execute(self._reserve_sql, {"key": key, "span": span}).first()
        return None if row is None else (row[0], row[1])

    def _held(self) -> Connection:
        if self._connection is None:
            # Its own connection, each statement committed by itself: the row is locked only
            # for the UPDATE, never across a sender's transaction.
            connection = self.engine.connect()
            self._connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.invalidate()
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        with self._using:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
