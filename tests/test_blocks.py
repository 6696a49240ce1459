"""Block data: dates in words, motion points, supporter names, key checks."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from newsroom.compose import blocks

LONDON = ZoneInfo("Europe/London")


def test_meeting_words() -> None:
    start = datetime(2022, 10, 5, 18, 30, tzinfo=LONDON)
    assert blocks.meeting_words(start, None) == "Wednesday 5 October 2022, 6.30pm"
    assert (
        blocks.meeting_words(start, start.replace(hour=20, minute=0))
        == "Wednesday 5 October 2022, 6.30pm–8pm"
    )
    noon = datetime(2022, 2, 28, 12, 0, tzinfo=LONDON)
    assert blocks.meeting_words(noon, None) == "Monday 28 February 2022, 12pm"
    weekend = datetime(2021, 9, 18, 11, 0, tzinfo=LONDON)
    assert (
        blocks.meeting_words(weekend, datetime(2021, 9, 19, 16, 0, tzinfo=LONDON))
        == "Saturday 18 September 2021, 11am – Sunday 19 September 2021, 4pm"
    )


def test_statement_attribution() -> None:
    statement = blocks.Statement("Diane Abbott MP", "", date(2020, 12, 16), False)
    assert statement.attribution == "— Diane Abbott MP, 16 December 2020"
    month = blocks.Statement("Apsana Begum MP", "former CLP secretary", date(2020, 12, 1), True)
    assert month.attribution == "— Apsana Begum MP, former CLP secretary, December 2020"


def test_motion_keeps_numbers_and_letters() -> None:
    body = "This meeting believes:\n\n1. First\n   goes on\n2) Second:\na) one\n(b) two\n\nEnd."
    parts = blocks.motion_parts(body, 10)
    assert [(p.marker, p.level, p.text, p.line) for p in parts] == [
        ("", 0, "This meeting believes:", 10),
        ("1.", 1, "First goes on", 12),
        ("2)", 1, "Second:", 14),
        ("a)", 2, "one", 15),
        ("(b)", 2, "two", 16),
        ("", 0, "End.", 18),
    ]


def test_supporter_names_skip_blanks_and_comments() -> None:
    assert blocks.supporter_names("# signed\nRed Flag\n\n- Havant CLP \n") == (
        "Red Flag",
        "Havant CLP",
    )


def test_check_keys_lists_the_allowed_ones() -> None:
    found: list[tuple[int, str]] = []
    blocks.check_keys("action", {"link": ("x", 3)}, 2, lambda line, m: found.append((line, m)))
    assert found == [
        (3, 'unknown key "link" in the action block: allowed keys are url, button'),
        (2, 'missing key "url" in the action block (required: url)'),
    ]
