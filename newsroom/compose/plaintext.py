"""The plain-text part of an issue, designed per block and wrapped at 72 columns.

Quotes carry their attribution, meetings are labelled lines (When, Where, Register, Join,
Calendar), supporters a list, motions keep their numbers and letters, and links become numbered
references listed at the end, before a footer with the unsubscribe link.
"""

from __future__ import annotations

from collections.abc import Iterable

from newsroom.compose import blocks, images, markup
from newsroom.compose.issues import Block, Issue, Markdown, Node
from newsroom.compose.markup import WIDTH, FieldTable, References, wrap
from newsroom.compose.views import VIEWS, Audience, PrivateNote, Seen, walk
from newsroom.settings import Config

RULE = "-" * WIDTH


def render(
    issue: Issue, config: Config, audience: Audience, fields: FieldTable, list_name: str = ""
) -> str:
    """The text part; merge fields stay as sentinels for rendering to finish."""
    refs = References()
    site = config.text("site.name")
    title = fields.protect(issue.title)
    head = [site, blocks.date_words(issue.date), "", wrap(title), "=" * min(len(title), WIDTH)]
    body = list(_nodes(issue.body, issue, config, audience, fields, refs))
    out = ["\n".join(head), *body]
    if refs.urls:
        base = config.text("site.base_url").rstrip("/")
        urls = (images.address(url, issue.images, base) for url in refs.urls)
        out.append("Links:\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(urls, 1)))
    out.append(_footer(issue, config, audience, fields, list_name))
    return "\n\n".join(part for part in out if part) + "\n"


def _footer(
    issue: Issue, config: Config, audience: Audience, fields: FieldTable, list_name: str
) -> str:
    site = config.text("site.name")
    base = config.text("site.base_url").rstrip("/")
    page = f"{base}/issues/{issue.slug}/"
    address = config.text("site.postal_address")
    theme = config.theme
    lines = [RULE, *([wrap(theme.about)] if theme.about else [])]
    lines.append(wrap(f"Sent by {site}{', ' + address if address else ''}."))
    lines += [wrap(f"{link.label}: {link.url}") for link in theme.links]
    if not audience.email:
        lines.append(wrap(f"This issue is in our public archive: {page}"))
        lines.append(wrap(f"Subscribe: {base}"))
        return "\n".join(lines)
    unsubscribe = fields.protect("{{unsubscribe_url}}")
    preferences = fields.protect("{{preferences_url}}")
    subscribed = f"{list_name}, a list of {site}," if list_name else site
    lines.append(wrap(f"You get this email because you subscribed to {subscribed} at {base}."))
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
    seen = Seen(issue, config, audience, fields)
    headed = False  # whether the part before is a block under a heading of its own
    for node in walk(nodes, audience):
        if isinstance(node, PrivateNote):
            yield node.text
        elif isinstance(node, Markdown):
            yield markup.to_text(node.text, fields, refs)
        if not isinstance(node, Block):
            headed = False
            continue
        title = _title(node, seen, headed)
        headed = bool(title)
        yield _block(node, title, seen, refs)


def _heading(text: str) -> str:
    return f"{wrap(text)}\n{'-' * min(len(text), WIDTH)}"


def _title(block: Block, seen: Seen, headed: bool) -> str:
    """A block's heading in the text part (views.VIEWS says it), if it has one; HEADED: the
    part before is a block under a heading, which an untitled one would seem to belong to."""
    view = VIEWS[block.type]
    title = view.heading(seen.fields.protect(block.title), block)
    return title or (view.follows if headed else "")


def _block(block: Block, title: str, seen: Seen, refs: References) -> str:
    """A block's text part: its heading, then its paragraphs."""
    view = VIEWS[block.type]
    out = [_heading(title)] if title else []
    out += view.text(block, seen, refs)
    return "\n\n".join(part for part in out if part)
