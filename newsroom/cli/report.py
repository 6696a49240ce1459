"""`newsroom report` and the returns lines of `newsroom mailings show`: what came back from each
mailing, as tables, a sparkline of rates per mailing, warnings — or JSON, or an HTML file."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import click

from newsroom.cli.common import State, echo_json, json_option, pass_state
from newsroom.delivery import reports
from newsroom.delivery.reputation import Rate, Returns, percent, share
from newsroom.errors import NewsroomError

BLOCKS = "▁▂▃▄▅▆▇█"  # a sparkline's eight heights (U+2581 to U+2588)


@click.command()
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="DATE",
    help="Mailings created on or after DATE (YYYY-MM-DD, in site.timezone).",
)
@click.option(
    "--last",
    type=click.IntRange(1, 10_000),
    metavar="N",
    help=f"Only the last N mailings (without --since: {reports.DEFAULT_LAST}).",
)
@click.option(
    "--list",
    "list_slug",
    metavar="SLUG",
    help="Only mailings whose segment expression names list SLUG.",
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write a self-contained HTML report with charts to FILE instead.",
)
@json_option
@pass_state
def report(
    state: State,
    since: datetime | None,
    last: int | None,
    list_slug: str | None,
    html_file: Path | None,
    as_json: bool,
) -> None:
    """Show what came back from each mailing over time, beside the providers' thresholds.

    One row per mailing: sent, failed, deferred, hard and soft bounces, complaints and
    unsubscribes by method, each as a count and a rate; a sparkline of rates per mailing; a
    warning for each rate past a published aim or limit. Counted from what newsroom records:
    no open pixel, no click redirect.

    \b
    Example:
      newsroom report --since 2026-01-01 --list disability-group --html report.html
    """
    if as_json and html_file:
        raise NewsroomError("--json and --html: choose one")
    period = reports.Period(since.date() if since else None, last, list_slug)
    made = reports.build(state.site, period, now=state.now())
    if as_json:
        echo_json(made.as_dict())
        return
    if html_file:
        from newsroom.web import reportpage  # pure, but only this option needs it

        reportpage.write(html_file, reportpage.render(made, state.site.config.text("site.name")))
        click.echo(f"wrote {html_file}: {len(made.rows)} mailing(s), {period.describe()}")
        return
    for line in _text(made):
        click.echo(line)


def _text(made: reports.Report) -> list[str]:
    if not made.rows:
        return [f"nothing to report: no mailing{made.period.filters()} has gone out yet"]
    lines = [f"{made.period.heading()}, times in {made.zone.key}:", ""]
    lines += _table(
        made,
        "deliveries (rates of all the mailing's deliveries)",
        ("sent", "failed", "deferred"),
        dated=True,
    )
    lines += _table(
        made,
        "what came back (bounces of the messages sent or refused, complaints of those sent)",
        ("hard_bounces", "soft_bounces", "complaints"),
    )
    lines += _table(
        made, "unsubscribes through its links (of the messages sent)", ("unsubscribes",)
    )
    lines += ["* above the aim  ** over the limit", ""]
    lines += _chart(made)
    lines += [f"warning: {warning}" for warning in made.warnings]
    lines += [f"hint: {hint}" for hint in made.hints]
    return [line.rstrip() for line in lines]


def _table(
    made: reports.Report, title: str, names: tuple[str, ...], dated: bool = False
) -> list[str]:
    """TITLE, then a row per mailing: its id, date (if DATED), issue, and each rate NAMES
    (the unsubscribes with their methods)."""
    methods = names == ("unsubscribes",)
    heads = [n.replace("_", " ") for n in names]
    if methods:
        heads += [r.name for r in made.rows[0].returns.by_method]
    date = f"  {'created':16}" if dated else ""
    lines = [f"{title}:", f"{'id':>4}{date}  {'issue':18}" + "".join(f"  {h:>13}  " for h in heads)]
    for row in made.rows:
        rates: list[Rate] = [getattr(row.returns, name) for name in names]
        if methods:
            rates += row.returns.by_method
        date = f"  {made.local(row.created_at):%Y-%m-%d %H:%M}" if dated else ""
        cells = "".join(f"  {_cell(r)}" for r in rates)
        lines.append(f"{row.id:>4}{date}  {row.issue_slug[:18]:18}{cells}")
    return [*lines, ""]


def _cell(rate: Rate) -> str:
    """'4 (50.00 %)**': the count, the rate, a mark past the aim (*) or the limit (**)."""
    mark = {"above the aim": "*", "over the limit": "**"}.get(rate.verdict, "")
    shown = f" ({percent(rate.rate)})" if rate.rate is not None else ""
    return f"{f'{rate.count}{shown}':>13}{mark:2}"


def _chart(made: reports.Report) -> list[str]:
    """A sparkline per rate, one block per mailing, oldest first. With a threshold a full
    block is its limit or more; without, the highest rate shown."""
    lines = ["rates per mailing, oldest first:"]
    for series in made.series():
        values = [v for _, v in series.points]
        if series.threshold is not None:
            top = series.threshold.limit
            scale = f"full block: the limit of {share(top)} or more"
        else:
            top = max((v for v in values if v is not None), default=0.0)
            scale = f"full block: the highest, {percent(top)}"
        spark = "".join(_block(v, top) for v in values)
        lines.append(f"  {series.name:13} {spark}  ({scale})")
    return [*lines, ""]


def _block(value: float | None, top: float) -> str:
    """A space for nothing sent, the lowest block for 0, any rate above it at least one up."""
    if value is None:
        return " "
    if value <= 0 or top <= 0:
        return BLOCKS[0]
    return BLOCKS[max(1, min(7, math.ceil(value / top * 7)))]


def returns_lines(returns: Returns) -> list[str]:
    """`newsroom mailings show`'s lines: each rate, the unsubscribes by method, the warnings
    and what often causes them."""
    lines = [rate_line(rate) for rate in returns.rates]
    lines += [rate_line(rate, indent="  ") for rate in returns.by_method]
    lines += [f"warning: {warning}" for warning in returns.warnings]
    return lines + [f"hint: {hint}" for hint in returns.hints]


def rate_line(rate: Rate, indent: str = "") -> str:
    """'complaints:   1 of 400 sent (0.25 %) — above the aim: Gmail and Yahoo: …'."""
    line = f"{indent}{rate.name + ':':{14 - len(indent)}}{rate.count} of {rate.of} {rate.of_what}"
    if rate.rate is not None:
        line += f" ({percent(rate.rate)})"
    if rate.verdict:
        assert rate.threshold is not None
        line += f" — {rate.verdict}: {rate.threshold.source}"
    return line
