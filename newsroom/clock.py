"""Time as a parameter. The library never reads the wall clock where a caller can hand it a
clock: the CLI and the web app pass `utcnow`, and a test passes a clock of its own, so no test
depends on today's date."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real time, in UTC."""
    return datetime.now(UTC)
