"""Time zones as volunteers write them, after a time: in an issue's `date:` and in `send --at`.
(Not in newsroom.clock, which every command imports: zoneinfo costs a start-up 4 ms.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A UTC offset as written after a time: +01:00 or +0100.
OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


class ZoneError(ValueError):
    """A time zone that is not one: PROBLEM names it, HINT says what to write instead; the
    caller says where it was written (an issue's `date:`, `send --at`)."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(f"{problem}: {hint}")
        self.problem, self.hint = problem, hint


def zone(text: str) -> tzinfo:
    """A time zone as a volunteer writes one: Z or UTC, a UTC offset (+01:00, -0500) or a name
    of the tz database (Europe/London). Raises ZoneError."""
    if text in ("Z", "UTC"):
        return UTC
    offset = OFFSET.fullmatch(text)
    if offset:
        sign, hours, minutes = offset.groups()
        if int(hours) > 14 or int(minutes) > 59:  # UTC-12 to UTC+14 are the offsets in use
            raise ZoneError(f'bad UTC offset "{text}"', "write +HH:MM or -HH:MM, such as +01:00")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long, a folder
        raise ZoneError(
            f'unknown time zone "{text[:40]}"',
            "use a name such as Europe/London or an offset such as +01:00",
        ) from None


def skipped(moment: datetime) -> bool:
    """Whether MOMENT's wall-clock time does not exist in its zone (the hour the clocks go
    forward): a round trip through UTC changes it."""
    back = moment.astimezone(UTC).astimezone(moment.tzinfo)
    return back.replace(tzinfo=None) != moment.replace(tzinfo=None)
