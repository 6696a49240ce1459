"""The mailing report as one self-contained HTML page (`newsroom report --html`): for each rate
plotted, an inline SVG chart of its value per mailing over time with the published aim and limit
drawn across it, then a table of all the numbers. Nothing loads from anywhere: no script, no
stylesheet, font or image from another host, and a Content-Security-Policy of 'none' tells the
browser so. Pure: a report in (delivery/reports.py), text out; `write` puts it in a file.

Accessibility (WCAG 2.2): each chart is an `img` named by its <title> and described, value by
value, by its <desc> (1.1.1); the table carries the same numbers (1.3.1); text is at least
4.5:1 against the page (1.4.3), the lines and marks at least 3:1 (1.4.11), and the limit, the
aim and a mailing over the limit differ in dash or shape, and are labelled, not only coloured
(1.4.1)."""

from __future__ import annotations

import math
import os
from html import escape
from pathlib import Path

from newsroom.delivery.reports import Report, Row, Series
from newsroom.delivery.reputation import Rate, percent, share
from newsroom.errors import NewsroomError

MARKER = "<!-- newsroom report -->"  # `write` replaces only a file that begins with it
INK = "#1b1b1b"  # 17.2:1 on white
LINE = "#1f4e8c"  # the rate: 8.3:1
LIMIT = "#a4161a"  # 7.8:1, dashed
AIM = "#7a5200"  # 6.9:1, dotted
MUTED = "#595959"  # axis labels: 7.0:1
GRID = "#d9d9d9"  # decorative only: the tick labels carry the scale
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 112, 24, 44

STYLE = f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: {INK};
  background: #fff; margin: 0 auto; padding: 1rem; max-width: 72rem; line-height: 1.45; }}
:root {{ color-scheme: light; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.2rem; margin-top: 2rem; }}
h3 {{ font-size: 1rem; margin: 1.5rem 0 0; }} small {{ font-weight: normal; font-size: .9rem; }}
figure {{ margin: 1rem 0; }} svg {{ max-width: 100%; height: auto; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
caption {{ text-align: left; font-weight: 600; padding: .25rem 0; }}
th, td {{ border: 1px solid #8a8a8a; padding: .3rem .5rem; text-align: right; vertical-align: top; }}
td {{ white-space: nowrap; }}
th {{ background: #f2f2f2; }} td.issue, th.issue {{ text-align: left; }}
td.over {{ background: #fdecea; }} td.above {{ background: #fff4e5; }}
.warnings li {{ margin-bottom: .4rem; }}
footer {{ margin-top: 2.5rem; border-top: 1px solid #8a8a8a; padding-top: .5rem;
  font-size: .95rem; }}
"""

FOOTER = (
    "Counted only from what newsroom records anyway: the relay's answer to each message, the "
    "bounce and abuse reports that come back to each message's own envelope sender, and the "
    "unsubscribes made through each mailing's own links. No open pixel, no click redirect: "
    "nobody's reading or clicking is tracked. “Sent” means accepted by the relay, not "
    "delivered. Gmail sends senders no abuse reports, so complaints here are a lower bound; "
    "its own rate is in Google Postmaster Tools."
)


def render(report: Report, site_name: str) -> str:
    """The whole page, as text."""
    about = f"{report.period.heading()}, times in {report.zone.key}"
    made = f"{report.local(report.made_at):%Y-%m-%d %H:%M}"
    charts = "\n".join(_figure(s, report, n) for n, s in enumerate(report.series(), 1))
    parts = [
        f"<h1>{escape(site_name)}: what came back from each mailing</h1>",
        f"<p>{escape(about)}. Made {made}.</p>",
        _warnings(report),
        "<h2>Rates per mailing over time</h2>" + (charts if report.rows else ""),
        "<h2>The numbers</h2>" + _table(report),
        f"<h2>Thresholds</h2>{_thresholds(report)}",
    ]
    if not report.rows:
        none = f"No mailing{report.period.filters()} has gone out yet."
        parts[2:4] = [f"<p>{escape(none)}</p>"]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            MARKER,
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            f"<title>{escape(site_name)}: mailing report, {escape(report.period.describe())}"
            "</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            "<main>",
            *parts,
            "</main>",
            f"<footer><p>{FOOTER}</p></footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _warnings(report: Report) -> str:
    if not report.warnings:
        return "<p>No rate is past a published aim or limit.</p>"
    items = "".join(f"<li>{escape(w)}</li>" for w in report.warnings)
    hints = "".join(f"<li>{escape(h[:1].upper() + h[1:])}.</li>" for h in report.hints)
    return (
        f'<h2>Warnings</h2><ul class="warnings">{items}</ul>'
        f"<p>What often causes them:</p><ul>{hints}</ul>"
    )


def _thresholds(report: Report) -> str:
    items = [
        f"<li>{escape(s.name.capitalize())}: aim below {share(s.threshold.aim)}, limit "
        f"{share(s.threshold.limit)} — {escape(s.threshold.source)}.</li>"
        for s in report.series()
        if s.threshold is not None
    ]
    return f"<ul>{''.join(items)}</ul>"


# --- the table -------------------------------------------------------------------------------

HEADS = ("Sent", "Failed", "Deferred", "Hard bounces", "Soft bounces", "Complaints")


def _table(report: Report) -> str:
    if not report.rows:
        return "<p>Nothing to show.</p>"
    methods = [f"by {r.name}" for r in report.rows[0].returns.by_method]
    heads = ["Mailing", "Created", "Issue", *HEADS, "Unsubscribes", *methods]
    head = "".join(
        f'<th scope="col" class="issue">{h}</th>' if h == "Issue" else f'<th scope="col">{h}</th>'
        for h in map(escape, heads)
    )
    body = "\n".join(_table_row(report, row) for row in report.rows)
    return (
        '<div class="scroll" role="region" aria-label="The numbers" tabindex="0"><table>'
        "<caption>Each mailing's count and rate: sent, failed and deferred of its deliveries; "
        "bounces of the messages sent or refused; complaints and unsubscribes of those sent"
        f"</caption><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>"
    )


def _table_row(report: Report, row: Row) -> str:
    r = row.returns
    rates = [r.sent, r.failed, r.deferred, r.hard_bounces, r.soft_bounces, r.complaints]
    cells = "".join(_cell(rate) for rate in [*rates, r.unsubscribes, *r.by_method])
    created = f"{report.local(row.created_at):%Y-%m-%d %H:%M}"
    return (
        f'<tr><th scope="row">{row.id}</th><td>{created}</td>'
        f'<td class="issue">{escape(row.issue_slug)}</td>{cells}</tr>'
    )


def _cell(rate: Rate) -> str:
    shown = f" ({percent(rate.rate)})" if rate.rate is not None else ""
    if rate.verdict in ("above the aim", "over the limit"):
        kind = "over" if rate.verdict == "over the limit" else "above"
        return f'<td class="{kind}">{rate.count}{shown}<br><strong>{rate.verdict}</strong></td>'
    return f"<td>{rate.count}{shown}</td>"


# --- the charts ------------------------------------------------------------------------------


def _figure(series: Series, report: Report, number: int) -> str:
    ident = f"chart-{number}"
    title = f"{series.name.capitalize()} per mailing, oldest first"
    return (
        f"<h3>{escape(series.name.capitalize())} <small>({escape(_of(series))})</small></h3>"
        f'<figure><svg role="img" aria-labelledby="{ident}-title {ident}-desc" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">'
        f'<title id="{ident}-title">{escape(title)}</title>'
        f'<desc id="{ident}-desc">{escape(_describe(series, report))}</desc>'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>'
        f"{_axes(series, report)}{_thresholds_drawn(series)}{_line(series, report)}"
        "</svg></figure>"
    )


def _of(series: Series) -> str:
    """What a plotted rate is a share of, as the table's caption says."""
    return "of the messages sent or refused" if "bounces" in series.name else "of those sent"


def _describe(series: Series, report: Report) -> str:
    values = "; ".join(
        f"mailing {row.id} on {_day(report, row)}: "
        + (percent(v) if v is not None else "nothing sent")
        for row, v in series.points
    )
    said = f"The {series.name} rate of each of the {len(series.points)} mailings: {values}."
    if series.threshold is not None:
        t = series.threshold
        said += f" Aim below {share(t.aim)}, limit {share(t.limit)} ({t.source})."
    return said


def _day(report: Report, row: Row, year: bool = True) -> str:
    """'2 Nov 2026' (or '2 Nov'), in the site's time zone."""
    moment = report.local(row.created_at)
    return f"{moment.day} {moment:%b %Y}" if year else f"{moment.day} {moment:%b}"


def _top(series: Series) -> float:
    """The top of the chart's scale: a round number above every value and the limit."""
    values = [v for _, v in series.points if v is not None]
    if series.threshold is not None:
        values.append(series.threshold.limit * 1.25)
    highest = max(values, default=0.0) or 0.01
    step = _nice(highest / 4)
    return step * math.ceil(highest / step - 1e-9)


def _nice(raw: float) -> float:
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw - 1e-12)


def _x(index: int, count: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * (index + 0.5) / count


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(value, top) / top)


def _axes(series: Series, report: Report) -> str:
    top = _top(series)
    step = _nice(top / 4)
    parts = []
    for i in range(round(top / step) + 1):
        tick = i * step
        y = _y(tick, top)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="{MUTED}">{tick * 100:.3g} %</text>'
        )
    count = len(series.points)
    every = max(1, math.ceil(count / 10))  # at most about ten dates under the axis
    for i, (row, _) in enumerate(series.points):
        if i % every == 0:
            parts.append(
                f'<text x="{_x(i, count):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle" '
                f'font-size="12" fill="{MUTED}">{escape(_day(report, row, year=False))}</text>'
            )
    base = HEIGHT - BOTTOM
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}" stroke="{INK}"/>')
    return "".join(parts)


def _thresholds_drawn(series: Series) -> str:
    if series.threshold is None:
        return ""
    top, t = _top(series), series.threshold
    y_limit, y_aim = _y(t.limit, top), _y(t.aim, top)
    label_aim = max(y_aim, y_limit + 14)  # the labels never overlap, however close the lines
    return "".join(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
        f'stroke-width="2" stroke-dasharray="{dashes}"/>'
        f'<text x="{WIDTH - RIGHT + 6}" y="{label + 4:.1f}" font-size="12" '
        f'fill="{colour}">{word} {share(value)}</text>'
        for y, label, colour, dashes, word, value in (
            (y_limit, y_limit, LIMIT, "8 4", "limit", t.limit),
            (y_aim, label_aim, AIM, "2 3", "aim", t.aim),
        )
    )


def _line(series: Series, report: Report) -> str:
    top, count = _top(series), len(series.points)
    limit = series.threshold.limit if series.threshold else None
    runs: list[list[str]] = [[]]
    marks = []
    for i, (row, value) in enumerate(series.points):
        if value is None:
            runs.append([])
            continue
        x, y = _x(i, count), _y(value, top)
        runs[-1].append(f"{x:.1f},{y:.1f}")
        tip = f"<title>mailing {row.id}, {_day(report, row)}: {percent(value)}</title>"
        if limit is not None and value >= limit:  # a diamond: over the limit
            shape = (
                f"{x:.1f},{y - 7:.1f} {x + 7:.1f},{y:.1f} {x:.1f},{y + 7:.1f} {x - 7:.1f},{y:.1f}"
            )
            marks.append(f'<polygon points="{shape}" fill="{LIMIT}">{tip}</polygon>')
        else:
            marks.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{LINE}">{tip}</circle>')
        if count <= 12:
            marks.append(
                f'<text x="{x:.1f}" y="{y - 10:.1f}" text-anchor="middle" font-size="11" '
                f'fill="{INK}" stroke="#fff" stroke-width="3" paint-order="stroke">'
                f"{value * 100:.2f}</text>"
            )
    lines = "".join(
        f'<polyline points="{" ".join(run)}" fill="none" stroke="{LINE}" stroke-width="2.5"/>'
        for run in runs
        if len(run) > 1
    )
    return lines + "".join(marks)


# --- the file --------------------------------------------------------------------------------


def write(path: Path, page: str) -> None:
    """Write PAGE to PATH whole or not at all (a temporary file renamed over it). A file that
    is there already is replaced only if it is an earlier report: nothing else is lost."""
    if not path.parent.is_dir():
        raise NewsroomError(f"{path}: there is no folder {path.parent} (nothing written)")
    if path.exists() and not _earlier_report(path):
        raise NewsroomError(
            f"{path} exists and is not a newsroom report: give a new file name (nothing written)"
        )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise NewsroomError(f"{path}: cannot write it: {exc.strerror} (nothing written)") from None


def _earlier_report(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as file:
        start = file.read(200)
    return start.startswith(f"<!DOCTYPE html>\n{MARKER}".encode())
