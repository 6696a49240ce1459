"""How each block type shows: one table (`VIEWS`) drives the email, the web page and the text
part of a block, and the two containers (private, only) are walked here once for all three.

A block's email and web renderings are templates (`templates/email/TYPE.mjml.j2`, and its branch
of `templates/web/content.html.j2`) fed one item: its kind, title, heading level and body HTML,
and what its `View.item` adds; its text part is its `View.heading` and `View.text`. Adding a
block type: docs/blocks.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from newsroom.compose import blocks, calendar, markup
from newsroom.compose.issues import Block, Issue, Markdown, Node
from newsroom.compose.markup import FieldTable, References, wrap
from newsroom.settings import Config


@dataclass(frozen=True)
class Audience:
    """Who a variant is for: the public, or email recipients matching some only expressions."""

    email: bool
    matched: frozenset[str] = frozenset()

    def includes(self, block: Block) -> bool:
        if block.type == "private":
            return self.email
        if block.type == "only":
            return isinstance(block.data, blocks.Only) and block.data.expression in self.matched
        return True


@dataclass(frozen=True)
class PrivateNote:
    """Where a private block's content begins: a word to its readers not to pass it on."""

    html = "For subscribers only: this part is not on the website. Please do not forward it."
    text = "[For subscribers only: not on the website. Please do not forward.]"


def walk(nodes: Iterable[Node], audience: Audience) -> Iterator[Node | PrivateNote]:
    """NODES as AUDIENCE gets them: Markdown, blocks, and the note that opens a private block;
    a container (private, only) the audience is not in is left out, one it is in opens up."""
    for node in nodes:
        if isinstance(node, Markdown):
            yield node
        elif audience.includes(node):
            if node.type == "private":
                yield PrivateNote()
            if blocks.SPECS[node.type].container:
                yield from walk(node.children, audience)
            else:
                yield node


@dataclass(frozen=True)
class Seen:
    """What a block is rendered with."""

    issue: Issue
    config: Config
    audience: Audience
    fields: FieldTable


Item = Callable[[Block, Seen], dict[str, Any]]
Text = Callable[[Block, Seen, References], list[str]]


def _same(title: str, _block: Block) -> str:
    return title


def _no_more(_block: Block, _seen: Seen) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class View:
    """One block type's renderings (see the module's docstring)."""

    text: Text  # the text part's paragraphs after the heading
    item: Item = _no_more  # the template's values beyond kind, title, level and html
    heading: Callable[[str, Block], str] = _same  # the text part's heading, from the title
    body: Callable[[Block], str | None] = lambda block: block.body  # Markdown (None: no html)
    # The text part's heading when untitled and right after a block with a heading: its lines
    # would read as that block's, for text has no border to set them apart (issue #14, item 6).
    follows: str = ""


def supporters_count(count: int) -> str:
    return f"{count} supporter{'s' if count != 1 else ''}"


def motion_byline(data: blocks.Motion) -> str:
    parts = []
    if data.by:
        parts.append(f"Moved by {data.by}")
    if data.passed:
        parts.append(f"passed {blocks.date_words(data.passed)}")
    text = ", ".join(parts)
    return text[:1].upper() + text[1:]


def _text(markdown: str, seen: Seen, refs: References) -> str:
    return markup.to_text(markdown, seen.fields, refs) if markdown else ""


# --- statement -------------------------------------------------------------------------------


def _statement_item(block: Block, _seen: Seen) -> dict[str, Any]:
    assert isinstance(block.data, blocks.Statement)
    return {"attribution": block.data.attribution}


def _statement_text(block: Block, seen: Seen, refs: References) -> list[str]:
    assert isinstance(block.data, blocks.Statement)
    quote = markup.to_text(block.body, seen.fields, refs, indent="    ")
    return [quote + "\n" + wrap(block.data.attribution, "    ", "      ")]


# --- meeting ---------------------------------------------------------------------------------


def _meeting_item(block: Block, seen: Seen) -> dict[str, Any]:
    data = block.data
    assert isinstance(data, blocks.Meeting)
    return {
        "when": data.when_words,
        "where": data.where,
        "register": data.register,
        "join": data.join if seen.audience.email else "",  # private: email only
        "ics_url": calendar.ics_url(seen.issue, block, seen.config),
    }


def _meeting_text(block: Block, seen: Seen, refs: References) -> list[str]:
    data = block.data
    assert isinstance(data, blocks.Meeting)
    rows = [("When", data.when_words), ("Where", data.where), ("Register", data.register)]
    if seen.audience.email:
        rows.append(("Join", data.join))
    rows.append(("Calendar", calendar.ics_url(seen.issue, block, seen.config)))
    shown = [(label, value) for label, value in rows if value]
    width = max(len(label) for label, _ in shown) + 2
    table = "\n".join(wrap(value, f"{label + ':':<{width}}", " " * width) for label, value in shown)
    return [table, _text(block.body, seen, refs)]


# --- supporters ------------------------------------------------------------------------------


def _supporters_item(block: Block, seen: Seen) -> dict[str, Any]:
    assert isinstance(block.data, blocks.Supporters)
    names = [seen.fields.protect(name) for name in block.data.names]  # merge fields as in body
    half = (len(names) + 1) // 2
    return {
        "columns": [names[:half], names[half:]] if half else [],
        "count_words": supporters_count(len(names)),
    }


def _supporters_text(block: Block, seen: Seen, refs: References) -> list[str]:
    assert isinstance(block.data, blocks.Supporters)
    names = "\n".join(wrap(seen.fields.protect(n), "- ", "  ") for n in block.data.names)
    return [_text(block.data.intro, seen, refs), names]


def _supporters_heading(title: str, block: Block) -> str:
    assert isinstance(block.data, blocks.Supporters)
    count = len(block.data.names)
    return f"{title} ({count})" if title else f"Supporters ({count})"


def _supporters_body(block: Block) -> str:
    assert isinstance(block.data, blocks.Supporters)
    return block.data.intro  # the names are shown apart


# --- motion ----------------------------------------------------------------------------------


def _motion_item(block: Block, seen: Seen) -> dict[str, Any]:
    data = block.data
    assert isinstance(data, blocks.Motion)
    parts = [
        {"marker": p.marker, "level": p.level, "html": markup.inline_html(p.text, seen.fields)}
        for p in data.parts
    ]
    return {"byline": motion_byline(data), "parts": parts}


def _motion_text(block: Block, seen: Seen, refs: References) -> list[str]:
    data = block.data
    assert isinstance(data, blocks.Motion)
    out = [wrap(byline)] if (byline := motion_byline(data)) else []
    for part in data.parts:
        text = markup.inline_text(part.text, seen.fields, refs)
        if not part.marker:
            out.append(wrap(text))
            continue
        first = f"{'' if part.level == 1 else '    '}{part.marker} "
        out.append(wrap(text, first, " " * len(first)))
    return out


# --- action ----------------------------------------------------------------------------------


def _action_item(block: Block, _seen: Seen) -> dict[str, Any]:
    assert isinstance(block.data, blocks.Action)
    return {"url": block.data.url, "button": block.data.button}


def _action_text(block: Block, seen: Seen, refs: References) -> list[str]:
    data = block.data
    assert isinstance(data, blocks.Action)
    return [_text(block.body, seen, refs), wrap(f"{data.button}: {data.url}", "", "  ")]


def _labelled(label: str) -> Callable[[str, Block], str]:
    return lambda title, _block: f"{label}: {title}" if title else label


VIEWS: dict[str, View] = {
    "statement": View(_statement_text, _statement_item, follows="Statement"),
    "meeting": View(_meeting_text, _meeting_item, _labelled("Meeting")),
    "supporters": View(_supporters_text, _supporters_item, _supporters_heading, _supporters_body),
    "motion": View(_motion_text, _motion_item, _labelled("Motion"), lambda _block: None),
    "action": View(_action_text, _action_item),
}
