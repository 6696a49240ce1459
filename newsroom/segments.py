"""The segment expression language (`all-members and not tag:press`) compiled to SQLAlchemy.

Grammar (operators also in capitals; `not` binds tightest, then `and`, then `or`):

    expr := term ("or" term)*        term := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | "tag:" NAME | LIST-SLUG

A list slug matches subscribers with a confirmed subscription to that list; `tag:NAME` matches
subscribers with that tag. Whatever the expression, only subscribers with at least one confirmed
subscription match. Names are resolved against the database first, so an unknown list or tag is
an error pointing at its column, and every value reaches SQL as a bound parameter.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select
from sqlalchemy.orm import Session

from newsroom.errors import NewsroomError
from newsroom.models import MailingList, Subscriber, SubscriberTag, Subscription
from newsroom.models import SubscriptionStatus as Status

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


@dataclass(frozen=True)
class Segment:
    """A parsed expression with its names resolved against one database."""

    expression: str
    node: Node
    list_ids: dict[str, int]

    @property
    def condition(self) -> ColumnElement[bool]:
        """A WHERE condition on Subscriber: confirmed somewhere, and the expression holds."""
        predicate = self._compile(self.node)
        if _implies_confirmed(self.node):
            return predicate
        anywhere = select(Subscription.subscriber_id).where(Subscription.status == Status.CONFIRMED)
        return and_(Subscriber.id.in_(anywhere), predicate)

    def _compile(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, ListRef):
            confirmed = select(Subscription.subscriber_id).where(
                Subscription.list_id == self.list_ids[node.slug],
                Subscription.status == Status.CONFIRMED,
            )
            return Subscriber.id.in_(confirmed)
        if isinstance(node, TagRef):
            tagged = select(SubscriberTag.subscriber_id).where(SubscriberTag.tag == node.name)
            return Subscriber.id.in_(tagged)
        if isinstance(node, Not):
            return not_(self._compile(node.operand))
        parts = [self._compile(operand) for operand in node.operands]
        return and_(*parts) if isinstance(node, And) else or_(*parts)

    def select(self) -> Select[int, str, str]:
        """Matching subscribers (id, email, name) in id order, for batches keyed on the id."""
        return (
            select(Subscriber.id, Subscriber.email, Subscriber.name)
            .where(self.condition)
            .order_by(Subscriber.id)
        )

    def count(self, session: Session) -> int:
        return (
            session.scalar(select(func.count()).select_from(Subscriber).where(self.condition)) or 0
        )

    @property
    def list_slugs(self) -> list[str]:
        """The lists the expression names, in order of first mention."""
        return _named_lists(self.node)


def _named_lists(node: Node) -> list[str]:
    return list(dict.fromkeys(a.slug for a in atoms(node) if isinstance(a, ListRef)))


def _implies_confirmed(node: Node) -> bool:
    """True when matching NODE already needs a confirmed subscription (skip the extra test)."""
    if isinstance(node, ListRef):
        return True
    if isinstance(node, And):
        return any(_implies_confirmed(o) for o in node.operands)
    if isinstance(node, Or):
        return all(_implies_confirmed(o) for o in node.operands)
    return False


def resolve(session: Session, expression: str) -> Segment:
    """Parse EXPRESSION and check every list and tag it names exists."""
    node = parse(expression)
    found = list(atoms(node))
    slugs = {a.slug for a in found if isinstance(a, ListRef)}
    rows = session.execute(
        select(MailingList.slug, MailingList.id).where(
            MailingList.slug.in_(slugs), MailingList.retired_at.is_(None)
        )
    )
    list_ids = {slug: id_ for slug, id_ in rows}
    known_tags = tags_in_use(session, {a.name for a in found if isinstance(a, TagRef)})
    for atom in found:
        if isinstance(atom, ListRef) and atom.slug not in list_ids:
            raise SegmentError(
                expression,
                atom.position,
                f"unknown list {atom.slug!r}",
                lists_hint(atom.slug, _known_lists(session)),
            )
        if isinstance(atom, TagRef) and atom.name not in known_tags:
            raise SegmentError(
                expression, atom.position, f"unknown tag {atom.name!r}", "no subscriber has it"
            )
    return Segment(expression, node, list_ids)


def _known_lists(session: Session) -> Sequence[str]:
    return session.scalars(
        select(MailingList.slug).where(MailingList.retired_at.is_(None)).order_by(MailingList.slug)
    ).all()


def tags_in_use(session: Session, names: Collection[str]) -> set[str]:
    """Those of NAMES that some subscriber has as a tag."""
    if not names:
        return set()
    query = select(SubscriberTag.tag).where(SubscriberTag.tag.in_(names)).distinct()
    return set(session.scalars(query))


def lists_hint(slug: str, known: Iterable[str]) -> str:
    """What follows "unknown list SLUG" wherever a list is named (an expression, `to:`, an
    `only` block): the known list SLUG most likely meant (slugs are lower case, and typos
    happen), then every known list."""
    known = sorted(known)
    close = difflib.get_close_matches(slug.lower(), known, n=1, cutoff=0.75)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f"{guess}lists: {', '.join(known) or 'none'}"


def unsubscribe_lists(session: Session, expression: str) -> list[int] | None:
    """The lists that leaving from one message of a mailing to EXPRESSION ends — by the https
    one-click token the sender writes (RFC 8058) and by the mailto address (RFC 2369) alike: every
    list the expression names; None, meaning every list, when it names none (tags only).

    Looked up leniently, without `resolve`'s checks: the mailing may be older than a list retired
    or a tag erased since, and its recipients must still be able to leave."""
    slugs = _named_lists(parse(expression))
    query = select(MailingList.slug, MailingList.id).where(MailingList.slug.in_(slugs))
    ids = {slug: id_ for slug, id_ in session.execute(query)}
    return [ids[slug] for slug in slugs if slug in ids] or None
