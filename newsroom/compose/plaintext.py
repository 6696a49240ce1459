"""The plain-text part of an issue, designed per block and wrapped at 72 columns.

Quotes carry their attribution, meetings are labelled lines (When, Where, Register, Join,
Calendar), supporters a list, motions keep their numbers and letters, and links become numbered
references listed at the end, before a footer with the unsubscribe link.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from newsroom.compose import blocks, calendar, markup
from newsroom.compose.issues import Block, Issue, Markdown, Node
from newsroom.compose.markup import WIDTH, FieldTable, References, wrap
from newsroom.settings import Config

if TYPE_CHECKING:
    from newsroom.compose.rendering import Audience

RULE = "-" * WIDTH


def render(issue: Issue, config: Config, audience: Audience, fields: FieldTable) -> str:
    """The text part; merge fields stay as sentinels for rendering to finish."""
    refs = References()
    site = config.text("site.name")
    title = fields.protect(issue.title)
    head = [site, blocks.date_words(issue.date), "", wrap(title), "=" * min(len(title), WIDTH)]
    body = list(_nodes(issue.body, issue, config, audience, fields, refs))
    out = ["\n".join(head), *body]
    if refs.urls:
        out.append("Links:\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(refs.urls, 1)))
    out.append(_footer(issue, config, audience, fields))
    return "\n\n".join(part for part in out if part) + "\n"


def _footer(issue: Issue, config: Config, audience: Audience, fields: FieldTable) -> str:
    site = config.text("site.name")
    base = config.text("site.base_url").rstrip("/")
    page = f"{base}/issues/{issue.slug}/"
    address = config.text("site.postal_address")
    lines = [RULE, wrap(f"Sent by {site}{', ' + address if address else ''}.")]
    if not audience.email:
        lines.append(wrap(f"This issue is in our public archive: {page}"))
        lines.append(wrap(f"Subscribe: {base}"))
        return "\n".join(lines)
    unsubscribe = fields.protect("{{unsubscribe_url}}")
    preferences = fields.protect("{{preferences_url}}")
    lines.append(wrap(f"You get this email because you subscribed to {site} at {base}."))
    lines += [
        "",
        wrap(f"Unsubscribe: {unsubscribe}"),
        wrap(f"Your preferences and data: {preferences}"),
        wrap(f"Read this on the web: {page}"),
    ]
    return "\n".join(lines)


def _nodes(
    nodes: Iterable[Node],
    issue: Issue,
    config: Config,
    audience: Audience,
    fields: FieldTable,
    refs: References,
) -> Iterable[str]:
    for node in nodes:
        if isinstance(node, Markdown):
            yield markup.to_text(node.text, fields, refs)
        elif audience.includes(node):
            if node.type == "private":
                yield "[For subscribers only: not on the website. Please do not forward.]"
            if node.type in ("private", "only"):
                yield from _nodes(node.children, issue, config, audience, fields, refs)
            else:
                yield _block(node, issue, config, audience, fields, refs)


def _heading(text: str) -> str:
    return f"{wrap(text)}\n{'-' * min(len(text), WIDTH)}"


def _block(
    block: Block,
    issue: Issue,
    config: Config,
    audience: Audience,
    fields: FieldTable,
    refs: References,
) -> str:
    data = block.data
    out: list[str] = []
    title = fields.protect(block.title)
    if isinstance(data, blocks.Meeting):
        title = f"Meeting: {title}" if title else "Meeting"
    elif isinstance(data, blocks.Motion):
        title = f"Motion: {title}" if title else "Motion"
    elif isinstance(data, blocks.Supporters):
        count = len(data.names)
        title = f"{title} ({count})" if title else f"Supporters ({count})"
    if title:
        out.append(_heading(title))
    body = block.body
    if isinstance(data, blocks.Statement):
        quote = markup.to_text(body, fields, refs, indent="    ")
        out.append(quote + "\n" + wrap(data.attribution, "    ", "      "))
    elif isinstance(data, blocks.Meeting):
        out.append(_meeting(data, issue, block, config, audience))
        if body:
            out.append(markup.to_text(body, fields, refs))
    elif isinstance(data, blocks.Supporters):
        body = data.intro
        if body:
            out.append(markup.to_text(body, fields, refs))
        out.append("\n".join(wrap(fields.protect(name), "- ", "  ") for name in data.names))
    elif isinstance(data, blocks.Motion):
        out.extend(_motion(data, fields, refs))
    elif isinstance(data, blocks.Action):
        if body:
            out.append(markup.to_text(body, fields, refs))
        out.append(wrap(f"{data.button}: {data.url}", "", "  "))
    return "\n\n".join(part for part in out if part)


def _meeting(
    data: blocks.Meeting, issue: Issue, block: Block, config: Config, audience: Audience
) -> str:
    rows = [("When", data.when_words), ("Where", data.where), ("Register", data.register)]
    if audience.email:
        rows.append(("Join", data.join))
    rows.append(("Calendar", calendar.ics_url(issue, block, config)))
    shown = [(label, value) for label, value in rows if value]
    width = max(len(label) for label, _ in shown) + 2
    return "\n".join(wrap(value, f"{label + ':':<{width}}", " " * width) for label, value in shown)


def _motion(data: blocks.Motion, fields: FieldTable, refs: References) -> list[str]:
    out: list[str] = []
    byline = ", ".join(
        x
        for x in (
            f"Moved by {data.by}" if data.by else "",
            f"passed {blocks.date_words(data.passed)}" if data.passed else "",
        )
        if x
    )
    if byline:
        out.append(wrap(byline[:1].upper() + byline[1:]))
    for part in data.parts:
        text = markup.inline_text(part.text, fields, refs)
        if not part.marker:
            out.append(wrap(text))
            continue
        indent = "" if part.level == 1 else "    "
        first = f"{indent}{part.marker} "
        out.append(wrap(text, first, " " * len(first)))
    return out
