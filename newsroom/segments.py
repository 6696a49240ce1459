"""The segment expression language (`all-members and not tag:press`): parsed, checked, evaluated
for one subscriber. No database: compose/ checks `only` and `to:` expressions with it, and
people/selection.py turns a parsed expression into SQL.

Grammar (operators also in capitals; `not` binds tightest, then `and`, then `or`):

    expr := term ("or" term)*        term := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | "tag:" NAME | "segment:" NAME | LIST-SLUG

A list slug matches subscribers with a confirmed subscription to that list; `tag:NAME` matches
subscribers with that tag; `segment:NAME` stands for the expression saved under NAME in
subscribers/segments.toml (people/savedsegments.py), itself made of lists, tags and names. A saved
name is written with its prefix, never bare: list slugs are bare, and a list added later must not
change what an expression that names a saved segment means (issue #16, item 2).

Whatever the expression, only subscribers with at least one confirmed subscription match.

Names are resolved when an expression is parsed with the saved expressions (`parse(text, saved)`):
an unknown name, a name that leads back to itself and an expansion beyond MAX_NODES atoms or
MAX_DEPTH levels are errors at the name's column. Parsed without them (`parse(text)`, as compose/
checks an issue's syntax), a name stays unresolved: it names no list or tag, and evaluating it
is an error. `unparse` writes a parsed
expression back with every name expanded: a mailing keeps that text, so that it means what it
meant when it was frozen whatever segments.toml says later.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from newsroom.errors import NewsroomError

MAX_LENGTH = 2000
MAX_DEPTH = 40
MAX_NODES = 500  # atoms of one expression with its saved names expanded: names using names
# could otherwise double at each level (a = b and b, b = c and c, ...)
SAVED_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<open>\()|(?P<close>\))"
    r"|(?P<tag>tag:(?P<tagname>[a-z0-9][a-z0-9_-]*))"
    r"|(?P<saved>segment:(?P<savedname>[a-z0-9][a-z0-9-]*))|(?P<word>[a-z0-9][a-z0-9-]*)",
    re.IGNORECASE,
)
OPERATORS = {"and", "or", "not"}


class SegmentError(NewsroomError):
    """A segment expression that cannot be used; the message points at the column."""

    def __init__(self, expression: str, position: int, message: str, hint: str = "") -> None:
        self.expression, self.position, self.reason = expression, position, message
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
class SavedRef:
    """`segment:NAME`, with the saved expression it stands for (None: parsed without them)."""

    name: str
    position: int
    node: Node | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = ListRef | TagRef | SavedRef | Not | And | Or


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
        elif kind == "saved":
            tokens.append(Token("saved", match.group("savedname").lower(), position))
        elif kind == "word":
            word = match.group()
            lowered = word.lower()
            tokens.append(Token(lowered if lowered in OPERATORS else "list", word, position))
        elif kind in ("open", "close"):
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(expression)))
    return tokens


@dataclass
class _Expansion:
    """What one parse shares with the parses of the saved names it expands."""

    saved: Mapping[str, str] | None
    names: tuple[str, ...] = ()  # the names being expanded, outermost first
    nodes: int = 0


class _Parser:
    def __init__(self, expression: str, expansion: _Expansion, depth: int = 0) -> None:
        self.expression = expression
        self.tokens = tokenize(expression)
        self.index = 0
        self.depth = depth
        self.expansion = expansion

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def fail(self, message: str, token: Token | None = None, hint: str = "") -> SegmentError:
        return SegmentError(self.expression, (token or self.current).position, message, hint)

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
        if token.kind in ("tag", "list", "saved"):
            self.expansion.nodes += 1
            if self.expansion.nodes > MAX_NODES:
                raise self.fail(
                    f"more than {MAX_NODES} lists, tags and names, saved segments expanded", token
                )
        if token.kind == "tag":
            return TagRef(token.text, token.position)
        if token.kind == "list":
            return ListRef(token.text, token.position)
        if token.kind == "saved":
            return self._saved(token)
        self.index -= 1
        found = "the end" if token.kind == "end" else repr(token.text)
        raise self.fail(
            f"expected a list, tag:NAME, segment:NAME, 'not' or '(', found {found}", token
        )

    def _saved(self, token: Token) -> SavedRef:
        """`segment:NAME` and, given the saved expressions, the expression it stands for."""
        name, expansion = token.text, self.expansion
        if expansion.saved is None:
            return SavedRef(name, token.position)
        if name not in expansion.saved:
            raise self.fail(
                f"unknown saved segment {name!r}", token, saved_hint(name, expansion.saved)
            )
        if name in expansion.names:
            path = " → ".join([*expansion.names[expansion.names.index(name) :], name])
            raise self.fail(f"segment:{name} leads back to itself ({path})", token)
        outermost = not expansion.names
        expansion.names = (*expansion.names, name)
        try:
            node = _Parser(expansion.saved[name], expansion, self.depth).parse()
        except SegmentError as exc:
            if not outermost:
                raise
            # Point at the name in the expression given, not into a text the reader never typed.
            raise self.fail(f"segment:{name} cannot be used: {exc.reason}", token) from None
        finally:
            expansion.names = expansion.names[:-1]
        return SavedRef(name, token.position, node)


def parse(expression: str, saved: Mapping[str, str] | None = None) -> Node:
    """The syntax tree of EXPRESSION; raises SegmentError pointing at the first mistake. With
    SAVED (name → expression, segments.toml), every `segment:NAME` is resolved too."""
    return _Parser(expression, _Expansion(saved)).parse()


def saved_hint(name: str, saved: Iterable[str]) -> str:
    """What follows "unknown saved segment NAME": the name most likely meant, then every one."""
    known = sorted(saved)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    guess = f"did you mean 'segment:{close[0]}'? " if close else ""
    listed = ", ".join(known) or "none: name them in subscribers/segments.toml"
    return f"{guess}saved segments: {listed}"


def atoms(node: Node) -> Iterable[ListRef | TagRef]:
    """Every list and tag NODE names, in reading order, saved names expanded in place."""
    for atom, _origin in atoms_with_origin(node):
        yield atom


def atoms_with_origin(
    node: Node, origin: SavedRef | None = None
) -> Iterable[tuple[ListRef | TagRef, SavedRef | None]]:
    """Each atom with the outermost `segment:NAME` it came from (None: the expression itself),
    so that an error about it can point at a column of the expression given."""
    if isinstance(node, ListRef | TagRef):
        yield node, origin
    elif isinstance(node, SavedRef):
        if node.node is not None:
            yield from atoms_with_origin(node.node, origin or node)
    elif isinstance(node, Not):
        yield from atoms_with_origin(node.operand, origin)
    else:
        for operand in node.operands:
            yield from atoms_with_origin(operand, origin)


def saved_refs(node: Node) -> Iterable[SavedRef]:
    """The `segment:NAME`s written in NODE itself (not those inside the saved expressions)."""
    if isinstance(node, SavedRef):
        yield node
    elif isinstance(node, Not):
        yield from saved_refs(node.operand)
    elif isinstance(node, And | Or):
        for operand in node.operands:
            yield from saved_refs(operand)


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
    if isinstance(node, SavedRef):
        return _holds(expanded(node), lists, tags)
    if isinstance(node, Not):
        return not _holds(node.operand, lists, tags)
    if isinstance(node, And):
        return all(_holds(o, lists, tags) for o in node.operands)
    return any(_holds(o, lists, tags) for o in node.operands)


def expanded(ref: SavedRef) -> Node:
    """The expression REF stands for; an error when it was parsed without the saved ones."""
    if ref.node is None:
        raise NewsroomError(
            f"segment:{ref.name} was read without subscribers/segments.toml: nothing can say "
            "whom it selects"
        )
    return ref.node


def unparse(node: Node) -> str:
    """NODE as an expression again, every saved name replaced by what it stands for:
    `parse(unparse(node))` selects the same subscribers, needing no segments.toml."""
    if isinstance(node, ListRef):
        return node.slug
    if isinstance(node, TagRef):
        return f"tag:{node.name}"
    if isinstance(node, SavedRef):
        return unparse(expanded(node))
    if isinstance(node, Not):
        return f"not {_operand(node.operand, (And, Or))}"
    if isinstance(node, And):
        return " and ".join(_operand(o, (Or,)) for o in node.operands)
    return " or ".join(_operand(o, ()) for o in node.operands)


def _operand(node: Node, looser: tuple[type, ...]) -> str:
    """NODE written as an operand: in parentheses when its operator binds less tightly."""
    while isinstance(node, SavedRef):
        node = expanded(node)
    text = unparse(node)
    return f"({text})" if isinstance(node, looser) else text


def uses_saved(node: Node) -> bool:
    """Whether NODE names a saved segment anywhere."""
    return any(True for _ in saved_refs(node))


def addressed_lists(node: Node) -> list[str]:
    """The lists NODE names outside any `not`, in reading order (saved names expanded): those
    a mailing to it is for, the first of them giving its List-Id and, if it has one, its sender."""
    if isinstance(node, ListRef):
        return [node.slug]
    if isinstance(node, TagRef | Not):
        return []
    if isinstance(node, SavedRef):
        return addressed_lists(expanded(node))
    return list(dict.fromkeys(s for o in node.operands for s in addressed_lists(o)))


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
