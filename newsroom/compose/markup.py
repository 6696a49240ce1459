"""The Markdown of an issue: checking links, images and merge fields; rendering to HTML and text.

Merge fields (`{{first_name|friend}}`) are swapped for private-use sentinels before Markdown sees
them, so no Markdown rule, template or inliner can mangle them; `rendering` turns the sentinels
into placeholders once per variant and `personalise` fills those per recipient.
"""

from __future__ import annotations

import re
import textwrap
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from newsroom.compose.personalise import AUTHOR_FIELDS, FOOTER_FIELDS
from newsroom.errors import Reporter

T = TypeVar("T")

# Possessive runs, spaces stripped afterwards (`field_parts`): lazy runs beside \s* are quadratic
# in a long run of spaces after "{{".
FIELD = re.compile(r"\{\{([^{}|]*+)(?:\|([^{}]*+))?\}\}")
# mjml-python writes the sentinels in attribute values (the footer's href) as \u{e000}.
# In text a sentinel is padded (\ue002) to about the width of a name, so lines wrap near 72.
SENTINEL = re.compile(r"(?:\ue000|\\u\{e000\})(\d+)\ue002*(?:\ue001|\\u\{e001\})")
SENTINEL_WIDTH = 10
LINK_SCHEMES = ("https", "http", "mailto", "tel")
LABEL_TOKENS = 8  # a vague link text ("click here") is a token or two; more is never vague
VAGUE = {"here", "click here", "this", "link", "read more", "more", "this link", "click"}

MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
MD.validateLink = lambda url: True  # type: ignore[method-assign]  # we report bad links ourselves

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "img", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody",
    "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "td": {"style"},
    "th": {"style"},
    "ol": {"start"},
    "abbr": {"title"},
}


def sanitise(html: str) -> str:
    """Raw HTML in Markdown is cut down to an allow-list (nh3): no scripts, styles or h1."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        link_rel=None,
        url_schemes=set(LINK_SCHEMES),
        filter_style_properties={"text-align"},
    )


def field_problem(name: str) -> str | None:
    if name in AUTHOR_FIELDS:
        return None
    if name in FOOTER_FIELDS:
        return (
            f"{{{{{name}}}}} is filled in by newsroom for the footer: it cannot be used in an issue"
        )
    return (
        f"unknown merge field {{{{{name}}}}}: use one of {', '.join(AUTHOR_FIELDS)}"
        " (with a fallback if you like: {{first_name|friend}})"
    )


def field_parts(match: re.Match[str]) -> tuple[str, str | None]:
    """A merge field's name and fallback (None: no "|"), without the spaces around them."""
    fallback = match.group(2)
    return match.group(1).strip(), fallback.strip() if fallback is not None else None


def check_fields(text: str, first_line: int, report: Reporter) -> None:
    for match in FIELD.finditer(text):
        problem = field_problem(field_parts(match)[0])
        if problem:
            report(first_line + text.count("\n", 0, match.start()), problem)


def url_problem(url: str, what: str) -> str | None:
    if "{{" in url or "%7B%7B" in url.upper():
        # Filled in, it would hand the reader's details to whoever runs that site; unfilled,
        # markdown-it has already percent-encoded the braces and the link is simply broken.
        typed = unquote(url)
        return (
            f'{what} "{typed}" has a merge field in its address: merge fields go in the text only'
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # such as "https://[oops/": an unclosed IPv6 bracket
        return f'{what} "{url}" is not a valid address: check it (brackets are for IPv6 only)'
    scheme = parts.scheme.lower() if ":" in url else ""
    if scheme in ("https", "http") and parts.netloc:
        return None
    if what == "link" and scheme in ("mailto", "tel"):
        return None
    if scheme in ("javascript", "data", "vbscript", "file"):
        return f'{what} "{url}" is not allowed: addresses must start with https://'
    return (
        f'{what} "{url}" is not a full address: write it with https://, such as '
        "https://example.org/page"
    )


def is_local(url: str) -> bool:
    """Whether an image's address names a file (`images/zoom-call.jpg`) rather than a site."""
    if not url or "{{" in url or "%7B%7B" in url.upper():
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return not parts.scheme and not parts.netloc


def check(
    text: str, first_line: int, report: Reporter, local: Callable[[str], str | None] | None = None
) -> None:
    """Report bad links, images without alt text and unknown merge fields in one Markdown text.
    LOCAL checks an image that names a file, returning its problem (None: it is refused)."""
    check_fields(text, first_line, report)
    lines = _Locator(text)
    for token, child in _inline_children(MD.parse(text)):
        if child.type == "link_open":
            url = str(child.attrGet("href") or "")
            problem = url_problem(url, "link")
        elif child.type == "image":
            url = str(child.attrGet("src") or "")
            problem = local(url) if local and is_local(url) else url_problem(url, "image")
            if not problem and not child.content.strip():
                problem = f'image "{url}" has no alt text: write ![what the image shows]({url})'
        else:
            continue
        if problem:
            report(first_line + lines.line_of(url, token), problem)


def _inline_children(tokens: list[Token]) -> Iterator[tuple[Token, Token]]:
    for token in tokens:
        for child in token.children or ():
            yield token, child


class _Locator:
    """The line of each link or image of a text, asked in reading order: each search starts
    where the last one in the same paragraph ended and looks a bounded way ahead, so a
    paragraph of thousands of links costs one pass, not one pass per link."""

    AHEAD = 4096  # characters searched past the last link found

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self.token: Token | None = None
        self.cursor = 0

    def line_of(self, needle: str, token: Token) -> int:
        if token is not self.token:
            self.token = token
            first = token.map[0] if token.map else 0
            self.cursor = self.starts[min(first, len(self.starts) - 1)]
        for candidate in (needle, unquote(needle)):  # markdown-it percent-encodes addresses
            end = self.cursor + self.AHEAD + len(candidate)
            found = self.text.find(candidate, self.cursor, end)
            if found >= 0:
                self.cursor = found
                break
        return bisect_right(self.starts, self.cursor) - 1


@dataclass
class FieldTable:
    """The merge fields of one issue, by sentinel number."""

    fields: list[tuple[str, str | None]] = field(default_factory=list)

    def protect(self, text: str) -> str:
        """Swap each merge field for a sentinel Markdown and templates leave alone."""

        def swap(match: re.Match[str]) -> str:
            self.fields.append(field_parts(match))
            return _sentinel(len(self.fields) - 1)

        return FIELD.sub(swap, text)

    def adopt(self, local: FieldTable, rendered: str) -> str:
        """RENDERED, made from a text protected by LOCAL (numbered from 0), with its sentinels
        renumbered to follow this table's, which takes LOCAL's fields."""
        offset = len(self.fields)
        self.fields.extend(local.fields)
        if not offset or not local.fields:
            return rendered
        return RAW_SENTINEL.sub(lambda m: _sentinel(int(m.group(1)) + offset), rendered)


def _sentinel(number: int) -> str:
    digits = str(number)
    return f"\ue000{digits}{chr(0xE002) * (SENTINEL_WIDTH - 2 - len(digits))}\ue001"


RAW_SENTINEL = re.compile("\ue000(\\d+)\ue002*\ue001")  # as protect writes them, before MJML
# Within `reuse()`: each Markdown text's rendering, kept for every variant of the issue.
_memo: ContextVar[dict[tuple[Any, ...], Any] | None] = ContextVar("markup_memo", default=None)


@contextmanager
def reuse() -> Iterator[None]:
    """Within this block each Markdown text is parsed once, however many variants are rendered
    from it: an issue with six `only` expressions has 65, and a 64 KB issue parsed 130 times
    takes minutes. Texts are protected from 0 (`FieldTable.adopt` renumbers them), so a text
    is the same key in every variant."""
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def _kept(key: tuple[Any, ...], make: Callable[[], T]) -> T:
    memo = _memo.get()
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return cast(T, memo[key])


@dataclass
class Outline:
    """Heading levels so far: the title is the one h1, and no level is ever skipped."""

    last: int = 1

    def level(self, wanted: int, base: int) -> int:
        level = min(max(wanted, base), self.last + 1)
        self.last = level
        return level


def to_html(text: str, fields: FieldTable, outline: Outline, base: int = 2) -> str:
    local = FieldTable()
    protected = local.protect(text)
    key = ("html", protected, outline.last, base)
    html, outline.last = _kept(key, lambda: _html(protected, outline.last, base))
    return fields.adopt(local, html)


def _html(protected: str, last: int, base: int) -> tuple[str, int]:
    """The HTML of a protected text, and the heading level it ends on (it started after LAST)."""
    outline = Outline(last)
    tokens = MD.parse(protected)
    for token in tokens:
        if token.type == "heading_open":
            token.tag = f"h{outline.level(int(token.tag[1]), base)}"
        elif token.type == "heading_close":
            token.tag = f"h{outline.last}"
    html = MD.renderer.render(tokens, MD.options, {})
    return sanitise(html).replace("{{", "&#123;{"), outline.last


def inline_html(text: str, fields: FieldTable) -> str:
    return sanitise(MD.renderInline(fields.protect(text))).replace("{{", "&#123;{")


def vague_links(text: str) -> Iterator[tuple[int, str]]:
    """(line offset, link text) of links whose text says nothing out of context."""
    lines = _Locator(text)
    for token in MD.parse(text):
        children = token.children or []
        for index, child in enumerate(children):
            if child.type != "link_open":
                continue
            label = _label_after(children, index)
            if label.strip().lower().strip(".!:") in VAGUE:
                yield lines.line_of(str(child.attrGet("href") or ""), token), label


def _label_after(children: list[Token], opening: int) -> str:
    """The text of the link opened at index OPENING; at most a few words are ever wanted."""
    words: list[str] = []
    for child in children[opening + 1 : opening + 1 + LABEL_TOKENS]:
        if child.type == "link_close":
            return "".join(words)
        words.append(child.content)
    return ""  # a long label: not vague, whatever its first words


def images_in(text: str) -> Iterator[tuple[int, str]]:
    """(line offset, address) of each Markdown image of a text."""
    lines = _Locator(text)
    for token, child in _inline_children(MD.parse(text)):
        if child.type == "image":
            url = str(child.attrGet("src") or "")
            yield lines.line_of(url, token), url


def links_in(text: str) -> Iterator[tuple[int, str]]:
    lines = _Locator(text)
    for token, child in _inline_children(MD.parse(text)):
        if child.type in ("link_open", "image"):
            url = str(child.attrGet("href") or child.attrGet("src") or "")
            yield lines.line_of(url, token), url


# Plain text ---------------------------------------------------------------------------------


@dataclass
class References:
    """Links in the text part, numbered [1], [2] … and listed at the end."""

    urls: list[str] = field(default_factory=list)

    def number(self, url: str) -> int:
        if url not in self.urls:
            self.urls.append(url)
        return self.urls.index(url) + 1


WIDTH = 72


def wrap(text: str, first: str = "", rest: str | None = None, width: int = WIDTH) -> str:
    rest = first if rest is None else rest
    out = []
    for index, line in enumerate(text.split("\n")):
        out.append(
            textwrap.fill(
                line,
                width=width,
                initial_indent=first if index == 0 else rest,
                subsequent_indent=rest,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or (first if index == 0 else rest).rstrip()
        )
    return "\n".join(out)


def to_text(text: str, fields: FieldTable, refs: References, indent: str = "") -> str:
    """A Markdown text as plain text: paragraphs wrapped, lists marked, links numbered."""
    local = FieldTable()
    protected = local.protect(text)
    tokens = _kept(("tokens", protected), lambda: MD.parse(protected))  # only read below
    return fields.adopt(local, _TextRenderer(refs, indent).render(tokens))


def inline_text(text: str, fields: FieldTable, refs: References) -> str:
    tokens = MD.parseInline(fields.protect(text))
    return _inline(tokens[0].children or [], refs) if tokens else ""


class _TextRenderer:
    def __init__(self, refs: References, indent: str) -> None:
        self.refs, self.indent = refs, indent
        self.lists: list[list[int]] = []  # per open list: [next number] or [-1] for bullets
        self.quote = 0
        self.marker: str | None = None  # list marker waiting for the item's first paragraph
        self.out: list[str] = []
        self.row: list[str] | None = None  # cells of the table row being read
        self.tight = False  # inside a tight list item (no blank lines between items)
        self.item_last = False  # the last thing written was a tight list item

    def prefix(self) -> tuple[str, str]:
        base = self.indent + "> " * self.quote + "   " * max(0, len(self.lists) - 1)
        if self.marker is not None:
            first, self.marker = base + self.marker, None
            return first, base + " " * (len(first) - len(base))
        pad = "   " if self.lists else ""
        return base + pad, base + pad

    def render(self, tokens: list[Token]) -> str:
        heading = 0
        for token in tokens:
            kind = token.type
            if kind == "inline":
                self._text(_inline(token.children or [], self.refs), heading)
                continue
            if kind == "paragraph_open":
                self.tight = token.hidden
            elif kind == "heading_open":
                heading = int(token.tag[1])
            elif kind == "heading_close":
                heading = 0
            elif kind == "bullet_list_open":
                self.lists.append([-1])
            elif kind == "ordered_list_open":
                self.lists.append([int(str(token.attrGet("start") or 1))])
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.lists.pop()
            elif kind == "list_item_open":
                counter = self.lists[-1]
                self.marker = "- " if counter[0] < 0 else f"{counter[0]}. "
                counter[0] += 0 if counter[0] < 0 else 1
            elif kind == "blockquote_open":
                self.quote += 1
            elif kind == "blockquote_close":
                self.quote -= 1
            elif kind in ("fence", "code_block"):
                pad = self.indent + "    "
                self.out.append(
                    "\n".join(pad + ln for ln in token.content.rstrip("\n").split("\n"))
                )
            elif kind == "hr":
                self.out.append(self.indent + "* * *")
            elif kind == "html_block":
                text = nh3.clean(token.content, tags=set()).strip()
                if text:
                    self.out.append(wrap(text, *self.prefix()))
            elif kind == "tr_open":
                self.row = []
            elif kind == "tr_close" and self.row is not None:
                self.out.append(self.indent + " | ".join(self.row))
                self.row = None
            if not kind.startswith(("paragraph_", "list_item_", "bullet_list_", "ordered_list_")):
                self.item_last = False
        return "\n\n".join(self.out)

    def _text(self, text: str, heading: int) -> None:
        if self.row is not None:
            self.row.append(text)
            return
        if heading:
            self.out.append(self._heading(text, heading))
            return
        first, rest = self.prefix()
        if self.tight and self.item_last and first.strip():
            self.out[-1] += "\n" + wrap(text, first, rest)
        else:
            self.out.append(wrap(text, first, rest))
        self.item_last = self.tight

    def _heading(self, text: str, level: int) -> str:
        underline = "-" if level <= 2 else "·"
        return f"{self.indent}{text}\n{self.indent}{underline * min(len(text), WIDTH)}"


def _inline(children: list[Token], refs: References) -> str:
    parts: list[str] = []
    href: list[str] = []
    start: list[int] = []
    for child in children:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "html_inline":
            parts.append(nh3.clean(child.content, tags=set()))
        elif kind == "link_open":
            href.append(str(child.attrGet("href") or ""))
            start.append(len(parts))
        elif kind == "link_close" and href:
            url, at = href.pop(), start.pop()
            label = "".join(parts[at:])
            bare = url.removeprefix("mailto:").removeprefix("tel:")
            if label.strip() not in (url, bare):
                parts.append(f" [{refs.number(url)}]")
        elif kind == "image":
            alt = child.content or "image"
            parts.append(f"[image: {alt}] [{refs.number(str(child.attrGet('src') or ''))}]")
    return "".join(parts).strip()


def fill_public(text: str) -> str:
    """Merge fields replaced by their fallbacks, as the public variant (web, feeds) says them."""

    def fallback(match: re.Match[str]) -> str:
        name, value = field_parts(match)
        return value if value is not None else AUTHOR_FIELDS.get(name, "")

    return FIELD.sub(fallback, text)
