"""A segment expression resolved against the database: the subscribers it selects, as SQL.

Names are resolved first, so an unknown list or tag is an error pointing at its column
(`segments.SegmentError`; for one inside a saved segment, at the `segment:NAME` that brought it
in), and every value reaches SQL as a bound parameter.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select
from sqlalchemy.orm import Session

from newsroom import segments
from newsroom.models import MailingList, Subscriber, SubscriberTag, Subscription
from newsroom.models import SubscriptionStatus as Status
from newsroom.segments import (
    And,
    ListRef,
    Node,
    Not,
    Or,
    SavedRef,
    SegmentError,
    TagRef,
    atoms_with_origin,
    named_lists,
    parse,
)


@dataclass(frozen=True)
class Segment:
    """A parsed expression with its names resolved against one database."""

    expression: str
    node: Node
    list_ids: dict[str, int]

    @property
    def plain(self) -> str:
        """The expression with its saved names expanded: what a mailing keeps."""
        return segments.unparse(self.node) if segments.uses_saved(self.node) else self.expression

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
        if isinstance(node, SavedRef):
            return self._compile(segments.expanded(node))
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
        return named_lists(self.node)


def _implies_confirmed(node: Node) -> bool:
    """True when matching NODE already needs a confirmed subscription (skip the extra test)."""
    if isinstance(node, ListRef):
        return True
    if isinstance(node, SavedRef):
        return _implies_confirmed(segments.expanded(node))
    if isinstance(node, And):
        return any(_implies_confirmed(o) for o in node.operands)
    if isinstance(node, Or):
        return all(_implies_confirmed(o) for o in node.operands)
    return False


def resolve(session: Session, expression: str, saved: Mapping[str, str] | None = None) -> Segment:
    """Parse EXPRESSION, its `segment:NAME`s with SAVED (name → expression, segments.toml), and
    check every list and tag it names exists."""
    node = parse(expression, saved or {})
    found = list(atoms_with_origin(node))
    slugs = {a.slug for a, _ in found if isinstance(a, ListRef)}
    rows = session.execute(
        select(MailingList.slug, MailingList.id).where(
            MailingList.slug.in_(slugs), MailingList.retired_at.is_(None)
        )
    )
    list_ids = {slug: id_ for slug, id_ in rows}
    known_tags = tags_in_use(session, {a.name for a, _ in found if isinstance(a, TagRef)})
    for atom, origin in found:
        position = origin.position if origin else atom.position
        inside = f" in segment:{origin.name} (subscribers/segments.toml)" if origin else ""
        if isinstance(atom, ListRef) and atom.slug not in list_ids:
            hint = segments.lists_hint(atom.slug, _known_lists(session))
            if not origin and saved and atom.slug in saved:
                hint = f"a saved segment has that name: write segment:{atom.slug}"
            raise SegmentError(expression, position, f"unknown list {atom.slug!r}{inside}", hint)
        if isinstance(atom, TagRef) and atom.name not in known_tags:
            raise SegmentError(
                expression, position, f"unknown tag {atom.name!r}{inside}", "no subscriber has it"
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


def unsubscribe_lists(session: Session, expression: str) -> list[int] | None:
    """The lists that leaving from one message of a mailing to EXPRESSION ends — by the https
    one-click token the sender writes (RFC 8058) and by the mailto address (RFC 2369) alike: every
    list the expression names; None, meaning every list, when it names none (tags only).

    Looked up leniently, without `resolve`'s checks: the mailing may be older than a list retired
    or a tag erased since, and its recipients must still be able to leave."""
    slugs = named_lists(parse(expression))
    query = select(MailingList.slug, MailingList.id).where(MailingList.slug.in_(slugs))
    ids = {slug: id_ for slug, id_ in session.execute(query)}
    return [ids[slug] for slug in slugs if slug in ids] or None
