"""Calendar files (.ics, RFC 5545) for the meetings of an issue: public details only.

    ics_files(issue, config) -> {"meeting-1.ics": b"BEGIN:VCALENDAR…", …}

Only meetings outside `private` and `only` blocks get a file, and a meeting's `join` link is
never in it: the files are served on the public web side (/issues/<slug>/meeting-N.ics).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import icalendar

from newsroom.compose import blocks, markup
from newsroom.compose.issues import Block, Issue, Node
from newsroom.settings import Config

DEFAULT_LENGTH = timedelta(hours=1)
YEAR = timedelta(days=366)


def _clear(moment: datetime) -> date:
    """MOMENT's date, kept two years clear of date.min and date.max, where icalendar's
    time zone rules overflow."""
    return min(max(moment.date(), date.min + 2 * YEAR), date.max - 2 * YEAR)


def public_meetings(issue: Issue) -> list[Block]:
    """Meetings a reader of the web page can see, in reading order."""
    found: list[Block] = []

    def visit(nodes: tuple[Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, Block) and node.type == "meeting":
                found.append(node)

    visit(issue.body)
    return found


def ics_name(issue: Issue, block: Block) -> str | None:
    meetings = public_meetings(issue)
    return f"meeting-{meetings.index(block) + 1}.ics" if block in meetings else None


def ics_url(issue: Issue, block: Block, config: Config) -> str:
    name = ics_name(issue, block)
    if name is None:
        return ""
    return f"{config.text('site.base_url').rstrip('/')}/issues/{issue.slug}/{name}"


def meeting_ics(issue: Issue, block: Block, config: Config, now: datetime | None = None) -> bytes:
    """One VEVENT for one meeting, with the VTIMEZONE its times name (RFC 5545 3.6.5: a TZID
    must have one). DTSTAMP is NOW, or by default the issue's publication instant, in UTC as
    RFC 5545 3.8.7.2 requires: the same issue makes the same bytes, and no wall clock is read."""
    data = block.data
    assert isinstance(data, blocks.Meeting)
    base = config.text("site.base_url").rstrip("/")
    page = f"{base}/issues/{issue.slug}/"
    cal = icalendar.Calendar()
    cal.add("prodid", f"-//{config.text('site.name')}//newsroom//EN")
    cal.add("version", "2.0")
    event = icalendar.Event()
    host = base.split("://", 1)[-1].split("/", 1)[0]
    event.add("uid", f"{issue.slug}-{ics_name(issue, block)}@{host}")
    event.add("dtstamp", (now or issue.published).astimezone(UTC))
    event.add("dtstart", data.start)
    event.add("dtend", data.end or data.start + DEFAULT_LENGTH)
    event.add("summary", markup.fill_public(block.title or issue.title))
    if data.where:
        event.add("location", data.where)
    description = [markup.fill_public(block.body.strip())] if block.body.strip() else []
    if data.register:
        description.append(f"Register: {data.register}")
    description.append(f"Details: {page}")
    event.add("description", "\n\n".join(description))
    event.add("url", data.register or page)
    cal.add_component(event)
    # The zone's rules from the tz database, for the year around the meeting only: the whole
    # default span (1970-2038) is 3 KB of RDATEs and stops short of later meetings.
    cal.add_missing_timezones(
        first_date=_clear(data.start) - YEAR, last_date=_clear(data.end or data.start) + YEAR
    )
    return cal.to_ical()


def ics_files(issue: Issue, config: Config, now: datetime | None = None) -> dict[str, bytes]:
    return {
        f"meeting-{n}.ics": meeting_ics(issue, block, config, now)
        for n, block in enumerate(public_meetings(issue), 1)
    }
