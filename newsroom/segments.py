"""The segment expression language (`all-members and not tag:press`): parsed, checked, evaluated
for one subscriber. No database: compose/ checks `only` and `to:` expressions with it, and
people/selection.py turns a parsed expression into SQL.

Grammar (operators also in capitals; `not` binds tightest, then `and`, then `or`):

    expr := term ("or" term)*        term := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | "tag:" NAME | LIST-SLUG

A list slug matches subscribers with a confirmed subscription to that list; `tag:NAME` matches
subscribers with that tag. Whatever the expression, only subscribers with at least one confirmed
subscription match.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from newsroom.errors import NewsroomError

MAX_LENGTH = 2000
MAX_DEPTH = 40
TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<open>\()|(?P<close>\))"
    r"|(?P<tag>tag:(?P<tagname>[a-z0-9][a-z0-9_-]*))|(?P<word>[a-z0-9][a-z0-9-]*)",
    re.IGNORECASE,
)
OPERATORS = {"and", "or", "not"}


class SegmentError(NewsroomError):
    """A segment expression that cannot be used; the message points at the column."""

    def __init__(self, expression: str, position: int, message: str, hint: str = "") -> None:
        self.expression, self.position = expression, position
        start = max(0, position - 60)  # a window around the column in a long expression
        shown = expression[start : start + 120]
        caret = " " * (position - start) + "^"
        hint = f" ({hint})" if hint else ""
        super().__init__(f"segment: {message} at column {position + 1}{hint}\n  {shown}\n  {caret}")


@dataclass(frozen=True)
class ListRef:
    slug: str
    position: int


@dataclass(frozen=True)
class TagRef:
    name: str
    position: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = ListRef | TagRef | Not | And | Or


@dataclass(frozen=True)
class Token:
    kind: str  # open, close, and, or, not, tag, list, end
    text: str
    position: int


def tokenize(expression: str) -> list[Token]:
    if len(expression) > MAX_LENGTH:
        raise SegmentError(
            expression, MAX_LENGTH, f"expression longer than {MAX_LENGTH} characters"
        )
    tokens, position = [], 0
    while position < len(expression):
        match = TOKEN.match(expression, position)
        if match is None:
            raise SegmentError(expression, position, f"unexpected {expression[position]!r}")
        kind = match.lastgroup
        if kind == "tag":
            tokens.append(Token("tag", match.group("tagname").lower(), position))
        elif kind == "word":
            word = match.group()
            lowered = word.lower()
            tokens.append(Token(lowered if lowered in OPERATORS else "list", word, position))
        elif kind in ("open", "close"):
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(expression)))
    return tokens


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = tokenize(expression)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def fail(self, message: str, token: Token | None = None) -> SegmentError:
        return SegmentError(self.expression, (token or self.current).position, message)

    def parse(self) -> Node:
        if self.current.kind == "end":
            raise self.fail("empty expression: name a list, such as all-members")
        node = self.expr()
        if self.current.kind != "end":
            raise self.fail(f"expected 'and', 'or' or the end, found {self.current.text!r}")
        return node

    def expr(self) -> Node:
        operands = [self.term()]
        while self.current.kind == "or":
            self.index += 1
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def term(self) -> Node:
        operands = [self.factor()]
        while self.current.kind == "and":
            self.index += 1
            operands.append(self.factor())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def factor(self) -> Node:
        token = self.current
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"expression nested deeper than {MAX_DEPTH} levels")
        try:
            return self._factor(token)
        finally:
            self.depth -= 1

    def _factor(self, token: Token) -> Node:
        self.index += 1
        if token.kind == "not":
            return Not(self.factor())
        if token.kind == "open":
            node = self.expr()
            if self.current.kind != "close":
                raise self.fail(f"expected ')' to close the '(' at column {token.position + 1}")
            self.index += 1
            return node
        if token.kind == "tag":
            return TagRef(token.text, token.position)
        if token.kind == "list":
            return ListRef(token.text, token.position)
        self.index -= 1
        found = "the end" if token.kind == "end" else repr(token.text)
        raise self.fail(f"expected a list, tag:NAME, 'not' or '(', found {found}", token)


def parse(expression: str) -> Node:
    """The syntax tree of EXPRESSION; raises SegmentError pointing at the first mistake."""
    return _Parser(expression).parse()


def atoms(node: Node) -> Iterable[ListRef | TagRef]:
    if isinstance(node, ListRef | TagRef):
        yield node
    elif isinstance(node, Not):
        yield from atoms(node.operand)
    else:
        for operand in node.operands:
            yield from atoms(operand)


def matches(node: Node, confirmed_lists: set[str], tags: set[str]) -> bool:
    """Plain Python evaluation for one subscriber (the reference the SQL is tested against)."""
    if not confirmed_lists:
        return False
    return _holds(node, confirmed_lists, tags)


def _holds(node: Node, lists: set[str], tags: set[str]) -> bool:
    if isinstance(node, ListRef):
        return node.slug in lists
    if isinstance(node, TagRef):
        return node.name in tags
    if isinstance(node, Not):
        return not _holds(node.operand, lists, tags)
    if isinstance(node, And):
        return all(_holds(o, lists, tags) for o in node.operands)
    return any(_holds(o, lists, tags) for o in node.operands)


def named_lists(node: Node) -> list[str]:
    """The lists NODE names, in order of first mention."""
    return list(dict.fromkeys(a.slug for a in atoms(node) if isinstance(a, ListRef)))


def lists_hint(slug: str, known: Iterable[str]) -> str:
    """What follows "unknown list SLUG" wherever a list is named (an expression, `to:`, an
    `only` block): the known list SLUG most likely meant (slugs are lower case, and typos
    happen), then every known list."""
    known = sorted(known)
    close = difflib.get_close_matches(slug.lower(), known, n=1, cutoff=0.75)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"{guess}lists: {', '.join(known) or 'none'}"
