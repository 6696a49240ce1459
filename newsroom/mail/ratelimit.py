"""Sending rates: `600/minute` overall and optional per-domain limits, as paced waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from newsroom.errors import ConfigError
from newsroom.settings import Config, parse_rate


def per_second(rate: str, where: str = "sending.rate") -> float:
    """`N/second|minute|hour` as messages per second."""
    parsed = parse_rate(rate)
    if parsed is None:
        raise ConfigError(f"{where}: {rate!r} must look like 600/minute (a number above 0)")
    count, window = parsed
    return count / window


def domain_rates(text: str) -> dict[str, float]:
    """`gmail.com=100/minute, outlook.com=60/minute` as {domain: messages per second}."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        domain, equals, rate = item.partition("=")
        if not equals or not domain.strip():
            raise ConfigError(f"sending.domain_rates: {item!r} must look like gmail.com=100/minute")
        rates[domain.strip().lower()] = per_second(rate, f"sending.domain_rates ({domain})")
    return rates


class Limiter(Protocol):
    """What a pool of connections awaits before each message (`smtp.Pool`): this process's
    RateLimiter, or the site's pace kept in the database (delivery/sitepace.py)."""

    async def wait(self, address: str) -> None: ...

    def close(self) -> None: ...


class Pace:
    """Spaces events 1/RATE seconds apart (a token bucket holding one token)."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.next = 0.0

    def delay(self) -> float:
        """Seconds to wait before the next event, which is booked at once."""
        now = self.clock()
        at = max(now, self.next)
        self.next = at + self.interval
        return at - now


class RateLimiter:
    """The overall pace and one pace per limited domain; `wait(address)` before each message."""

    def __init__(
        self,
        rate: float,
        domains: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.overall = Pace(rate, clock)
        self.domains = {d: Pace(r, clock) for d, r in (domains or {}).items()}

    @classmethod
    def from_config(cls, config: Config, share: int = 1) -> RateLimiter:
        """The configured rates, or one process's part of them when SHARE processes send a
        mailing together (`sending.processes`): the relay and each domain see the whole rate,
        never SHARE times it."""
        domains = domain_rates(config.text("sending.domain_rates"))
        return cls(
            per_second(config.text("sending.rate")) / share,
            {domain: rate / share for domain, rate in domains.items()},
        )

    def delay(self, address: str) -> float:
        domain = address.rpartition("@")[2].lower()
        pace = self.domains.get(domain)
        wait = pace.delay() if pace is not None else 0.0
        return max(wait, self.overall.delay())

    async def wait(self, address: str) -> None:
        delay = self.delay(address)
        if delay > 0:
            await asyncio.sleep(delay)

    def close(self) -> None:
        pass
