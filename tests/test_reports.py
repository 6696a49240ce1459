"""`newsroom report` (issue #16, item 5): three real mailings sent at chosen times through the
test SMTP server, with a 5xx, a 4xx, bounce and abuse reports read by `bounces process`, and
unsubscribes by a one-click POST, the unsubscribe page and the mailto address; then the report
as text, JSON and a self-contained HTML page, over periods, lists and errors."""

from __future__ import annotations

import json
import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from newsroom.delivery import reputation
from newsroom.site import Site
from newsroom.web import reportpage
from newsroom.web.app import create_app
from tests.conftest import Run
from tests.sendhelp import make_mailing, run, subscribe, subscribe_people
from tests.smtpserver import TestSMTPServer
from tests.test_reputation import one_click, report

# Mailing 2 is created at 00:30 on 20 October in London (British Summer Time): a day later in
# the site's time zone than in UTC, which `--since` must follow.
T1 = datetime(2026, 9, 15, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 10, 19, 23, 30, tzinfo=UTC)
T3 = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ISSUES = {
    "september-bulletin": ("2026-09-14", "all-members"),
    "november-meeting": ("2026-11-20", "disability-group"),
}


@pytest.fixture
def fast(smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch) -> TestSMTPServer:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    return smtp_server


@pytest.fixture
def sent(cli: Run, site_dir: Path, fast: TestSMTPServer, tmp_path: Path) -> Iterator[Site]:
    """Mailing 1: ten sent, nothing back. Mailing 2: p9 refused (550: failed, a hard bounce),
    p8 deferred (451), a hard bounce report about p2, a delay about p3, an abuse report about
    p4, p0 leaves by one-click and p1 by the mailto address. Mailing 3, to the Disability
    Group: four sent, d0 leaves through the footer's page."""
    for slug, (day, audience) in ISSUES.items():
        title = slug.replace("-", " ").title()
        text = f"---\ntitle: {title}\ndate: {day}\nto: {audience}\n---\nNews.\n"
        (site_dir / "issues" / f"{day}-{slug}.md").write_text(text)
    site = Site.open(site_dir)
    subscribe(site, 10)
    assert cli("send", "september-bulletin", "--yes", now=T1).exit_code == 0
    fast.reset()
    fast.fail("RCPT", 550, "5.1.1 <p9@example.net>: no such user", match="p9@")
    fast.fail("RCPT", 451, "4.7.1 <p8@example.net>: try again later", match="p8@")
    # A sender whose clock says T2 (`newsroom send` runs one on the wall clock), so that p8's
    # retry falls inside the mailing's retry window whatever today's date.
    second = make_mailing(site, slug="october-bulletin", now=T2)
    outcome = run(site, second.mailing_id, clock=lambda: T2)
    assert (outcome.sent, outcome.failed, outcome.deferred) == (8, 1, 1)
    subscribe_people(site, {f"d{i}@example.net": f"D {i}" for i in range(4)}, "disability-group")
    to = {m.rcpt_tos[0].split("@")[0]: m for m in fast.messages}
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    reports = [("postfix-hard.eml", "p2"), ("postfix-delayed.eml", "p3"), ("arf-abuse.eml", "p4")]
    for number, (name, who) in enumerate([*reports, ("mailto-client.eml", "p1")]):
        box.add(report(name, to[who], number))
    box.close()
    assert cli("bounces", "process", str(tmp_path / "bounces.mbox"), now=NOW).exit_code == 0
    fast.reset()
    assert cli("send", "november-meeting", "--yes", now=T3).exit_code == 0
    third = {m.rcpt_tos[0].split("@")[0]: m for m in fast.messages}
    with TestClient(create_app(site, clock=lambda: NOW)) as client:
        answer = client.post(one_click(to["p0"]), data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
        assert client.post(one_click(third["d0"])).status_code == 200  # the page: "link"
    yield site
    site.close()


def test_the_report_as_json(cli: Run, sent: Site) -> None:
    shown = cli("report", "--json", now=NOW)
    assert shown.exit_code == 0, shown.output
    made = json.loads(shown.stdout)
    assert made["period"] == {"since": None, "last": 12, "list": None}
    assert made["made_at"] == "2026-11-23T12:00:00+00:00"
    assert made["thresholds"] == {
        "hard_bounces": {"aim": 0.02, "limit": 0.05, "source": reputation.BOUNCES.source},
        "complaints": {"aim": 0.001, "limit": 0.003, "source": reputation.COMPLAINTS.source},
    }
    first, second, third = made["mailings"]
    assert [m["id"] for m in made["mailings"]] == [1, 2, 3]  # oldest first
    assert (second["issue"], second["to"], second["status"]) == (
        "october-bulletin", "all-members", "sending",  # p8 waits for its retry
    )  # fmt: skip
    assert second["created_at"] == "2026-10-19T23:30:00+00:00"
    counts = {k: (v["count"], v["of"]) for k, v in second["returns"].items()}
    assert counts == {
        "sent": (8, 10), "failed": (1, 10), "deferred": (1, 10),
        "hard_bounces": (2, 9), "soft_bounces": (1, 9),  # over the 9 sent or refused
        "complaints": (1, 8), "unsubscribes": (2, 8),  # over the 8 sent
    }  # fmt: skip
    by_method = second["returns"]["unsubscribes"]["by_method"]
    assert {k: v["count"] for k, v in by_method.items()} == {"one-click": 1, "link": 0, "mailto": 1}
    assert second["returns"]["complaints"]["rate"] == 1 / 8
    assert second["returns"]["hard_bounces"]["verdict"] == "over the limit"
    assert [w.split(" 1")[0].split(" 2")[0] for w in second["warnings"]] == [
        "hard bounces", "complaints",
    ]  # fmt: skip
    assert first["returns"]["sent"] == {"count": 10, "of": 10, "rate": 1.0}
    assert first["returns"]["complaints"]["verdict"] == "ok" and first["warnings"] == []
    assert third["returns"]["unsubscribes"]["by_method"]["link"] == {
        "count": 1, "of": 4, "rate": 0.25,
    }  # fmt: skip
    assert made["warnings"] == [f"mailing 2 (october-bulletin): {w}" for w in second["warnings"]]
    assert made["hints"] == [
        f"hard bounces: often {reputation.BOUNCES.advice}",
        f"complaints: often {reputation.COMPLAINTS.advice}",
    ]


def test_the_report_as_text(cli: Run, sent: Site) -> None:
    shown = cli("report", now=NOW)
    assert shown.exit_code == 0, shown.output
    warnings = reputation.mailing_returns(sent.engine, 2).warnings
    assert shown.stdout == TEXT + "".join(
        f"warning: mailing 2 (october-bulletin): {w}\n" for w in warnings
    ) + (
        f"hint: hard bounces: often {reputation.BOUNCES.advice}\n"
        f"hint: complaints: often {reputation.COMPLAINTS.advice}\n"
    )
    assert warnings == [
        "hard bounces 22.22 % is over the limit of 5 % — relays such as Amazon SES review a "
        "sender at 5 % hard bounces: aim below 2 %",
        "complaints 12.50 % is over the limit of 0.3 % — Gmail and Yahoo: keep complaints "
        "under 0.3 %, aiming below 0.1 %",
    ]


TEXT = """\
The last 12 mailings, times in Europe/London:

deliveries (rates of all the mailing's deliveries):
  id  created           issue                        sent           failed         deferred
   1  2026-09-15 10:00  september-bulletin  10 (100.00 %)       0 (0.00 %)       0 (0.00 %)
   2  2026-10-20 00:30  october-bulletin      8 (80.00 %)      1 (10.00 %)      1 (10.00 %)
   3  2026-11-20 18:30  november-meeting     4 (100.00 %)       0 (0.00 %)       0 (0.00 %)

what came back (bounces of the messages sent or refused, complaints of those sent):
  id  issue                hard bounces     soft bounces       complaints
   1  september-bulletin     0 (0.00 %)       0 (0.00 %)       0 (0.00 %)
   2  october-bulletin      2 (22.22 %)**    1 (11.11 %)      1 (12.50 %)**
   3  november-meeting       0 (0.00 %)       0 (0.00 %)       0 (0.00 %)

unsubscribes through its links (of the messages sent):
  id  issue                unsubscribes        one-click             link           mailto
   1  september-bulletin     0 (0.00 %)       0 (0.00 %)       0 (0.00 %)       0 (0.00 %)
   2  october-bulletin      2 (25.00 %)      1 (12.50 %)       0 (0.00 %)      1 (12.50 %)
   3  november-meeting      1 (25.00 %)       0 (0.00 %)      1 (25.00 %)       0 (0.00 %)

* above the aim  ** over the limit

rates per mailing, oldest first:
  hard bounces  ▁█▁  (full block: the limit of 5 % or more)
  complaints    ▁█▁  (full block: the limit of 0.3 % or more)
  unsubscribes  ▁██  (full block: the highest, 25.00 %)

"""


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (["--since", "2026-10-20"], [2, 3]),  # 00:30 on the 20th in London: included
        (["--since", "2026-10-21"], [3]),
        (["--last", "1"], [3]),
        (["--last", "2"], [2, 3]),
        (["--list", "disability-group"], [3]),
        (["--list", "all-members", "--last", "1"], [2]),
        (["--list", "all-members", "--since", "2026-10-01"], [2]),
        (["--since", "2026-12-01"], []),
    ],
)
def test_periods_and_lists(cli: Run, sent: Site, args: list[str], ids: list[int]) -> None:
    made = json.loads(cli("report", "--json", *args, now=NOW).stdout)
    assert [m["id"] for m in made["mailings"]] == ids


def test_nothing_to_report(cli: Run, site_dir: Path) -> None:
    shown = cli("report", "--since", "2026-01-01", "--list", "all-members", now=NOW)
    assert (shown.exit_code, shown.stdout) == (
        0, "nothing to report: no mailing since 2026-01-01 to all-members has gone out yet\n"
    )  # fmt: skip
    assert json.loads(cli("report", "--json", now=NOW).stdout)["mailings"] == []


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (
            ["--list", "disabilty-group"],
            1,
            "unknown list 'disabilty-group': did you mean 'disability-group'?",
        ),
        (["--since", "2026-13-01"], 2, "Invalid value for '--since'"),
        (["--since", "yesterday"], 2, "Invalid value for '--since'"),
        (["--last", "0"], 2, "Invalid value for '--last'"),
        (["--json", "--html", "r.html"], 1, "--json and --html: choose one"),
    ],
)
def test_error_paths(cli: Run, site_dir: Path, args: list[str], code: int, words: str) -> None:
    shown = cli("report", *args, now=NOW)
    assert shown.exit_code == code, shown.output
    assert words in shown.output and "Traceback" not in shown.output


# --- the HTML report -------------------------------------------------------------------------


class Page(HTMLParser):
    """What a test reads of the page: the table's rows, each chart's title, description and
    drawn elements, every attribute, the footer's text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.charts: list[dict[str, object]] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.footer = ""
        self._cell: list[str] | None = None
        self._in: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.append((tag, found))
        self._in.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and "tbody" in self._in:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")
        elif tag == "svg":
            self.charts.append({"attrs": found, "title": "", "desc": "", "drawn": []})
        elif self.charts and "svg" in self._in:
            drawn = self.charts[-1]["drawn"]
            assert isinstance(drawn, list)
            drawn.append((tag, found))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if "footer" in self._in:
            self.footer += data
        if len(self._in) > 1 and self._in[-1] in ("title", "desc") and self._in[-2] == "svg":
            self.charts[-1][self._in[-1]] = str(self.charts[-1][self._in[-1]]) + data


def contrast(colour: str, background: str = "#ffffff") -> float:
    """The WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(value: str) -> float:
        channels = [int(value[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(colour), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_html_report(cli: Run, sent: Site, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    shown = cli("report", "--html", str(out), now=NOW)
    assert (shown.exit_code, shown.stdout) == (
        0, f"wrote {out}: 3 mailing(s), the last 12 mailings\n"
    )  # fmt: skip
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert page.rows[1:] == [  # the header row, then one row per mailing
        ["1", "2026-09-15 10:00", "september-bulletin", "10 (100.00 %)", "0 (0.00 %)",
         "0 (0.00 %)", "0 (0.00 %)", "0 (0.00 %)", "0 (0.00 %)", "0 (0.00 %)", "0 (0.00 %)",
         "0 (0.00 %)", "0 (0.00 %)"],
        ["2", "2026-10-20 00:30", "october-bulletin", "8 (80.00 %)", "1 (10.00 %)",
         "1 (10.00 %)", "2 (22.22 %) over the limit", "1 (11.11 %)",
         "1 (12.50 %) over the limit", "2 (25.00 %)", "1 (12.50 %)", "0 (0.00 %)",
         "1 (12.50 %)"],
        ["3", "2026-11-20 18:30", "november-meeting", "4 (100.00 %)", "0 (0.00 %)",
         "0 (0.00 %)", "0 (0.00 %)", "0 (0.00 %)", "0 (0.00 %)", "1 (25.00 %)", "0 (0.00 %)",
         "1 (25.00 %)", "0 (0.00 %)"],
    ]  # fmt: skip
    assert [c["title"] for c in page.charts] == [
        "Hard bounces per mailing, oldest first",
        "Complaints per mailing, oldest first",
        "Unsubscribes per mailing, oldest first",
    ]
    complaints = page.charts[1]
    assert "mailing 2 on 20 Oct 2026: 12.50 %" in str(complaints["desc"])
    assert "Aim below 0.1 %, limit 0.3 %" in str(complaints["desc"])
    attrs = complaints["attrs"]
    assert isinstance(attrs, dict) and attrs["role"] == "img"
    ids = {a.get("id") for _, a in page.tags}
    assert set(attrs["aria-labelledby"].split()) <= ids  # names and describes the chart
    drawn = complaints["drawn"]
    assert isinstance(drawn, list)
    dashes = {a.get("stroke-dasharray") for tag, a in drawn if tag == "line"}
    assert {"8 4", "2 3"} <= dashes  # the limit and the aim, told apart by more than colour
    assert [tag for tag, _ in drawn].count("polygon") == 1  # mailing 2, over the limit
    assert "No open pixel, no click redirect" in page.footer


def test_the_html_report_is_self_contained_and_legible(
    cli: Run, sent: Site, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    assert cli("report", "--html", str(out), now=NOW).exit_code == 0
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert "://" not in text  # no address of anywhere: nothing to load, nothing to tell
    loaders = {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    assert sorted({tag for tag, _ in page.tags} & loaders) == []
    assert [a for _, attrs in page.tags for a in attrs if a in ("src", "href", "srcset")] == []
    assert "default-src 'none'" in text  # and the browser is told so
    drawn = [(tag, a) for chart in page.charts for tag, a in chart["drawn"]]  # type: ignore[attr-defined]
    texts = {a["fill"] for tag, a in drawn if tag == "text"}
    marks = {a[k] for _, a in drawn for k in ("fill", "stroke") if k in a} - {"none", "#fff"}
    marks -= {reportpage.GRID}  # decorative: the tick labels carry the scale
    assert min(contrast(c) for c in texts) >= 4.5  # WCAG 1.4.3
    assert min(contrast(c) for c in marks) >= 3.0  # WCAG 1.4.11
    for colour in re.findall(r"(?<![-\w])color: (#[0-9a-f]{6})", text):
        assert contrast(colour) >= 4.5


def test_the_html_report_escapes_what_it_shows(cli: Run, sent: Site, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    (sent.root / "newsroom.toml").write_text(
        (sent.root / "newsroom.toml")
        .read_text()
        .replace('name = "Test Newsroom"', 'name = "Left <b>&</b> Co"')
    )
    assert cli("report", "--html", str(out), now=NOW).exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert "<h1>Left &lt;b&gt;&amp;&lt;/b&gt; Co: what came back" in text


def test_the_html_file_replaces_only_an_earlier_report(
    cli: Run, site_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    assert cli("report", "--html", str(out), now=NOW).exit_code == 0
    assert "No mailing has gone out yet." in out.read_text()
    assert cli("report", "--html", str(out), now=NOW).exit_code == 0  # an earlier report
    other = tmp_path / "notes.html"
    other.write_text("<p>my notes</p>")
    shown = cli("report", "--html", str(other), now=NOW)
    assert shown.exit_code == 1
    assert shown.output == (
        f"Error: {other} exists and is not a newsroom report: give a new file name "
        "(nothing written)\n"
    )
    assert other.read_text() == "<p>my notes</p>"  # nothing lost
    missing = tmp_path / "no-such-folder" / "r.html"
    shown = cli("report", "--html", str(missing), now=NOW)
    assert (shown.exit_code, shown.output) == (
        1, f"Error: {missing}: there is no folder {missing.parent} (nothing written)\n"
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
