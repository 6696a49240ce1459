"""Preflight warnings on an issue that is valid but could be better: size, link text, headings,
non-https links, images without alt text in raw HTML, images loaded from other sites or over
1 MB, a missing summary, a very long subject.

Warnings never stop a send on their own; they are printed by `newsroom check` and before a send.

Also the names the issue's audience is made of, against the site's: a list or a saved segment
in `to:` or an `only` block that the site does not have is an error (the send would fail, the block would
never show), a tag that no subscriber has a warning (tags come with imports).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from newsroom import segments
from newsroom.compose import blocks, images, markup
from newsroom.compose.issues import Block, Issue, Markdown
from newsroom.compose.rendering import Rendered
from newsroom.errors import NewsroomError, Problem
from newsroom.segments import ListRef, TagRef

MAX_HTML_KB = 90  # Gmail clips at 102 KB; keep room for per-recipient links
MAX_SUBJECT = 78
HEADING = re.compile(r"^(#{1,6})\s")
# A tag is found first, then its alt: one pattern with a lookahead scanning to ">" from every
# "<img" is quadratic in a line of many unclosed "<img"s. A tag ends at the next "<" too.
IMG_TAG = re.compile(r"<img\b[^<>]*+>", re.IGNORECASE)
ALT = re.compile(r'\balt="[^"]+"', re.IGNORECASE)


def warnings(issue: Issue, rendered: Rendered, shown: str) -> list[Problem]:
    """Every warning of one issue, as `Problem`s whose message starts with "warning:"."""
    found = [Problem(shown, line, f"warning: {message}") for line, message in _all(issue, rendered)]
    return sorted(found, key=lambda p: p.line)


def _all(issue: Issue, rendered: Rendered) -> Iterator[tuple[int, str]]:
    if not issue.summary:
        yield (
            1,
            'no "summary" in the front matter: it is the preview line inboxes show beside the subject',
        )
    if len(issue.title) > MAX_SUBJECT:
        yield (
            2,
            f"the title is {len(issue.title)} characters long: inboxes show about 60, so put the point first",
        )
    for key, variant in rendered.variants.items():
        size = len(variant.html.encode("utf-8")) / 1024
        if key != "public" and size > MAX_HTML_KB:
            yield (
                1,
                f"the email ({key}) is {size:.0f} KB of HTML: Gmail clips emails over 102 KB; shorten it or split it",
            )
            break
    for text, line, level in _texts(issue):
        yield from _text_warnings(text, line, level)
        yield from _image_warnings(issue, text, line)


def _texts(issue: Issue) -> Iterator[tuple[str, int, int]]:
    """Each Markdown text, its first line, and the heading level it sits under."""
    for node in issue.walk():
        if isinstance(node, Markdown):
            yield node.text, node.line, 1
        elif isinstance(node, Block) and node.body:
            yield node.body, node.body_line, 2 if node.title else 1


def _text_warnings(text: str, first_line: int, previous: int) -> Iterator[tuple[int, str]]:
    for offset, label in markup.vague_links(text):
        yield (
            first_line + offset,
            f'link text "{label}" says nothing out of context: name where the link goes',
        )
    for offset, url in markup.links_in(text):
        if url.startswith("http://"):
            yield first_line + offset, f'"{url}" is not https: use https:// if the site offers it'
    for offset, line in enumerate(text.splitlines()):
        match = HEADING.match(line)
        if not match:
            if any(not ALT.search(tag) for tag in IMG_TAG.findall(line)):
                yield (
                    first_line + offset,
                    'an <img> has no alt text: add alt="what the image shows"',
                )
            continue
        level = len(match.group(1))
        if level == 1:
            yield (
                first_line + offset,
                'a "#" heading: the title is the only top-level heading, so start with "##"',
            )
        elif level > previous + 1:
            yield (
                first_line + offset,
                f"heading level {level} after level {previous}: do not skip levels (use {'#' * (previous + 1)})",
            )
        previous = max(level, 2)


def _image_warnings(issue: Issue, text: str, first_line: int) -> Iterator[tuple[int, str]]:
    for offset, url in markup.images_in(text):
        picture = issue.images.get(url)
        if picture is not None and picture.size > images.LARGE_BYTES:
            yield (
                first_line + offset,
                f"image {picture.shown} is {picture.size / 1024 / 1024:.1f} MB: the web page "
                "loads all of it (the email a smaller copy); save it smaller, such as 2,000 "
                "pixels wide at JPEG quality 80",
            )
        elif picture is None and not markup.is_local(url):
            yield (
                first_line + offset,
                f'image "{url}" is loaded from another site: whoever runs it learns who opened '
                "the email, when and where; put the file beside the issue (issues/images/) "
                "and write ![what it shows](images/NAME.jpg)",
            )


def _expressions(issue: Issue) -> Iterator[tuple[int, str, segments.Node]]:
    """Each expression of the issue, parsed: (line, `to` or `only`, its tree)."""
    found = [(issue.to_line, "to", issue.to)] if issue.to else []
    found += [
        (node.line, "only", node.data.expression)
        for node in issue.blocks
        if isinstance(node.data, blocks.Only)
    ]
    for line, where, expression in found:
        try:
            yield line, where, segments.parse(expression)
        except NewsroomError:  # reported when the issue was read
            continue


def named(issue: Issue) -> Iterator[tuple[int, str, ListRef | TagRef]]:
    """Every list and tag the issue names: (line, `to` or `only`, the name), in reading order
    (not those of the saved segments it names: segments.toml is checked on its own)."""
    for line, where, tree in _expressions(issue):
        for atom in segments.atoms(tree):
            yield line, where, atom


def unknown_segments(issue: Issue, shown: str, saved: Collection[str]) -> list[Problem]:
    """An error for each `segment:NAME` in the issue that subscribers/segments.toml does not
    name (issue #16, item 2)."""
    return [
        Problem(
            shown,
            line,
            f'unknown saved segment {ref.name!r} in "{where}" ({segments.saved_hint(ref.name, saved)})',
        )
        for line, where, tree in _expressions(issue)
        for ref in segments.saved_refs(tree)
        if ref.name not in saved
    ]


def unknown_lists(issue: Issue, shown: str, lists: Collection[str]) -> list[Problem]:
    """An error for each list the issue names that is not one of LISTS (subscribers/lists.toml),
    in the words `newsroom send --to` uses for one."""
    return [
        Problem(
            shown,
            line,
            f'unknown list {ref.slug!r} in "{where}" ({segments.lists_hint(ref.slug, lists)})',
        )
        for line, where, ref in named(issue)
        if isinstance(ref, ListRef) and ref.slug not in lists
    ]


def unknown_tags(issue: Issue, shown: str, tags: Collection[str]) -> list[Problem]:
    """A warning for each tag the issue names that is not one of TAGS (the tags subscribers
    have): an `only tag:…` block nobody sees, a `to:` that selects nobody by it."""
    return [
        Problem(
            shown,
            line,
            f'warning: no subscriber has the tag {ref.name!r} in "{where}" (tags come with '
            "imports and `subscribers add --tag`)",
        )
        for line, where, ref in named(issue)
        if isinstance(ref, TagRef) and ref.name not in tags
    ]
