"""The composing commands: `newsroom new`, `newsroom check` and `newsroom preview` (and its
local page, `preview --serve`)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from newsroom.cli.common import State, echo_json, json_option, pass_state
from newsroom.compose import calendar, issues, templating
from newsroom.compose.personalise import personalise
from newsroom.compose.rendering import render, web_page
from newsroom.delivery import letterhead, outbox, readiness
from newsroom.errors import NewsroomError, Problem, ProblemsError
from newsroom.people import lists, savedsegments
from newsroom.settings import CONFIG_FILE
from newsroom.site import Site

SKELETON = """\
---
title: {title}
date: {date}
to: all-members
summary: One sentence that sums the issue up; inboxes show it beside the subject.
---
Dear {{{{first_name|friend}}}},

Write the issue here in Markdown: **bold**, *italic*, [links with words that say where they
go](https://example.org), lists, and images (below).

<!--
An image is a JPEG or PNG file beside the issue, such as issues/images/photo.jpg, with words
saying what it shows for those who cannot see it: ![Members at the rally](images/photo.jpg)

Blocks start with a line "::: TYPE title" at the start of the line, may have "key: value" lines
right below it, then a blank line and Markdown, and end with a line ":::". Remove the two
spaces in front of ":::" to use one of these (merge fields: {{{{first_name}}}}, {{{{name}}}}, {{{{email}}}}).

  ::: statement A statement from Diane Abbott
  by: Diane Abbott MP
  role: Addressee for Hackney North
  date: 2020-12-16

  “I fully support this important campaign.”
  :::

  ::: meeting All members meeting
  when: 2022-10-05 18:30
  until: 20:00
  where: Online (Zoom)
  register: https://example.org/register
  join: https://example.org/zoom-link-sent-by-email-only

  Please join other members for this important discussion.
  :::

  ::: supporters Supporting organisations
  source: supporters.txt

  (or, instead of source:, a Markdown list: "- Name" lines)
  :::

  ::: motion Emergency motion
  by: All members meeting
  passed: 2022-02-28

  1. First point.
  2. Second point:
  a) lettered points are kept
  :::

  ::: action Sign the petition
  url: https://example.org/petition
  button: Sign the petition

  Why it matters, in a sentence or two.
  :::

  ::: private
  Only in the email: never on the website or in a feed.
  :::

  ::: only disability-group
  Only for recipients matching this segment expression.
  :::
-->
"""


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:60].strip("-") or "issue"


@click.command()
@click.argument("title")
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Publication date (default: today)."
)
@click.option("--slug", help="Part of the file name and web address (default: from the title).")
@pass_state
def new(state: State, title: str, day: datetime | None, slug: str | None) -> None:
    """Write a dated skeleton issue in issues/ showing every block type.

    \b
    Example:
      newsroom new "Save our socialists" --date 2020-12-24
    """
    site = state.site
    when = (
        day.date()
        if day
        else state.now().astimezone(ZoneInfo(site.config.text("site.timezone"))).date()
    )
    slug = slug or slugify(title)
    path = site.issues_dir / f"{when.isoformat()}-{slug}.md"
    if path.exists():
        raise NewsroomError(f"{path} already exists: choose another --slug or --date")
    site.issues_dir.mkdir(exist_ok=True)
    quoted = '"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'
    path.write_text(SKELETON.format(title=quoted, date=when.isoformat()), encoding="utf-8")
    click.echo(f"created {path}")
    click.echo(f"Next: edit it, then `newsroom check {path}` and `newsroom preview {path}`.")


def _targets(site: Site, paths: tuple[Path, ...], none_ok: bool = False) -> list[Path]:
    if paths:
        return list(paths)
    found = sorted(site.issues_dir.glob("*.md"))
    if not found and not none_ok:
        raise NewsroomError(
            f'no issues in {site.issues_dir}: write one with `newsroom new "Title"`'
        )
    return found


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@json_option
@pass_state
def check(state: State, paths: tuple[Path, ...], strict: bool, as_json: bool) -> None:
    """Check issues (default: all in issues/): errors, then preflight warnings.

    Errors (exit status 1) stop an issue being sent, among them a list in `to:` or `only` that
    subscribers/lists.toml does not have, a segment:NAME subscribers/segments.toml does not
    name, the errors of those two files, whatever stops a list's welcome issue (`welcome` in
    lists.toml) being sent, and a mistake in a template of the site's templates/ folder (each
    is rendered: templates/FILE:LINE: ...); warnings are advice: a tag no subscriber has,
    placeholder settings a mailing through a real relay refuses (newsroom.toml: ...), and a
    list sender DMARC would not align with dkim.domain.

    \b
    Example:
      newsroom check issues/2020-12-24-save-our-socialists.md
    """
    site = state.site
    overridden = templating.overrides(site.config)
    targets = _targets(site, paths, none_ok=bool(overridden))  # a site's templates alone
    clashes = issues.slug_problems(targets, site.config)  # a slug two files share
    errors: list[Problem] = []
    try:
        specs = lists.read_lists(site.lists_file)
        known: set[str] | None = set(specs)
    except ProblemsError as exc:  # lists.toml's own errors, at its lines
        errors.extend(exc.problems)
        specs, known = {}, None
    try:
        saved: set[str] | None = set(savedsegments.read(site.segments_file, known))
    except ProblemsError as exc:  # segments.toml's own errors, at its lines
        errors.extend(exc.problems)
        saved = None
    senders = _list_sender_warnings(site)
    warned: list[Problem] = list(senders)
    report: list[dict[str, Any]] = []
    if overridden:  # the web side is loaded only for a site's templates
        from newsroom.web import pages

        templates = pages.check_templates(site, state.now())
        errors.extend(templates.errors)
        warned.extend(templates.warnings)
        report.append(templates.report)
        if not as_json and templates.ok:
            click.echo(templates.ok)
    for path in targets:
        checked = outbox.check_issue(site, path, clashes.get(path.resolve(), []), known, saved)
        errors.extend(p for p in checked.errors if p not in errors)  # a template's, once
        warned.extend(checked.warnings)
        report.append(checked.report)
        if not as_json and checked.ok:
            click.echo(checked.ok)
    welcome = _welcome_problems(site, specs, errors)
    errors.extend(welcome)
    placeholders = readiness.warnings(site.config)  # a mailing through a real relay refuses them
    warned.extend(placeholders)
    if as_json:
        if placeholders:
            words = [str(w) for w in placeholders]
            report.append({"path": CONFIG_FILE, "errors": [], "warnings": words})
        if senders or welcome:
            words = [str(w) for w in senders]
            wrong = [str(p) for p in welcome]
            report.append({"path": "subscribers/lists.toml", "errors": wrong, "warnings": words})
        echo_json(report)
    else:
        for problem in [*errors, *warned]:
            click.echo(str(problem), err=True)
    if errors or (strict and warned):
        raise SystemExit(1)


def _welcome_problems(
    site: Site, specs: dict[str, lists.ListSpec], found: list[Problem]
) -> list[Problem]:
    """What stops each list's welcome issue being sent (issue #16, item 3), but for the
    problems already FOUND (the welcome issue checked as one of issues/)."""
    from newsroom.delivery import welcomes

    said = {str(p) for p in found}
    every = [p for wrong in welcomes.problems(site, specs).values() for p in wrong]
    return [p for p in every if str(p) not in said]


def _list_sender_warnings(site: Site) -> list[Problem]:
    """Lists that send as themselves from a placeholder or DMARC-unaligned domain."""
    try:
        return letterhead.warnings(site.config, lists.read_lists(site.lists_file))
    except ProblemsError:
        return []  # reported as errors already


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "address", metavar="EMAIL", help="Personalise for this subscriber.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write to (default: out/preview/SLUG).",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Show it on a local web page instead, reloaded whenever the issue or settings change.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="With --serve: address.")
@click.option("--port", type=int, default=0, help="With --serve: port (default: a free one).")
@pass_state
def preview(
    state: State,
    path: Path,
    address: str | None,
    out: Path | None,
    serve: bool,
    host: str,
    port: int,
) -> None:
    """Write an issue's HTML email, text part and web page to files, or show them on a local page.

    Without --serve, the files go to a folder and their paths are printed. With --serve, show them on a local web page instead: every variant at phone and desktop
    width, light and dark, the inbox line (subject and preheader) and the text part, reloaded
    when the issue, newsroom.toml or templates/ change; and at /inbox/ what `newsroom
    dev-smtp` received.

    \b
    Example:
      newsroom preview issues/2020-12-24-save-our-socialists.md --as ann@example.org
      newsroom preview issues/2020-12-24-save-our-socialists.md --serve --port 8001
    """
    if serve:
        if out is not None:
            raise NewsroomError("--out writes files and --serve shows a page: choose one")
        _serve(state, path, address, host, port)
        return
    site = state.site
    issue = issues.load_issue(path, site.config)
    rendered = render(issue, site.config)
    out = out or site.root / "out" / "preview" / issue.slug
    out.mkdir(parents=True, exist_ok=True)
    key, fields = outbox.preview_for(site, rendered, address, state.now())
    variant = rendered.variants[key]
    files = {
        "email.html": personalise(variant.html, fields, html=True),
        "email.txt": personalise(variant.text, fields, html=False),
        "web.html": web_page(issue, site.config),
    }
    every = rendered.variant_for(lambda _: True)
    if address is None and every != key:
        # Nobody in particular gets no `only` block: show them all too, for proofreading.
        files[f"{every}.html"] = personalise(rendered.variants[every].html, fields, html=True)
        files[f"{every}.txt"] = personalise(rendered.variants[every].text, fields, html=False)
        blocks = "; ".join(rendered.only_expressions)
        click.echo(f"{every}.html and {every}.txt have every only block ({blocks})", err=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    for name, data in calendar.ics_files(issue, site.config).items():
        (out / name).write_bytes(data)
        files[name] = ""
    click.echo(f"subject: {personalise(variant.subject, fields, html=False)} (variant {key})")
    for name in files:
        click.echo(str(out / name))


def _serve(state: State, path: Path, address: str | None, host: str, port: int) -> None:
    from newsroom.cli.web import run_local  # the web stack, for --serve alone
    from newsroom.web import preview as previews

    site = state.site
    found = outbox.find_issue(site, str(path))
    app, watched = previews.create_app(
        site.root, found, address=address, clock=state.clock, maildir=site.root / "maildir",
        host=host,
    )  # fmt: skip
    first = watched.shown()  # read once now: its problems are on the page, and said here too
    for problem in first.problems:
        click.echo(problem, err=True)
    run_local(app, host, port, f"preview of {first.path}")
