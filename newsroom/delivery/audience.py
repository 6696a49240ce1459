"""The audience of a mailing: who a segment expression selects, and which variant each one gets.

A mailing is frozen from one `Query`: the database selects the audience, matches each `only`
expression and writes the deliveries in one INSERT … SELECT, so no row passes through Python
(bench/bench_scale.py). Where rows must pass through Python (`--dry-run`), subscribers are read
in chunks keyed on the last id (as listmonk does), so memory does not grow with the list; an
issue's `only` blocks are matched per chunk with one query per expression.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from sqlalchemy import ColumnElement, Engine, Select, case, literal, select
from sqlalchemy.orm import Session

from newsroom.database import transaction
from newsroom.delivery.mailings import Addressee, AlreadyHad
from newsroom.models import Subscriber
from newsroom.people import selection

Matches = Callable[[str], bool]
Choose = Callable[[Matches], str]  # given "does this person match EXPRESSION?", a variant key


def addressees(
    engine: Engine, expression: str, choose: Choose, chunk: int = 25_000
) -> Iterator[Addressee]:
    """Every subscriber EXPRESSION selects, in id order, with the variant CHOOSE picks."""
    last = 0
    while True:
        with transaction(engine) as session:
            segment = selection.resolve(session, expression)
            rows = session.execute(segment.select().where(Subscriber.id > last).limit(chunk)).all()
            if not rows:
                return
            found = _Chunk(session, [row[0] for row in rows])
            for subscriber_id, email, _name in rows:
                yield Addressee(subscriber_id, email, choose(found.predicate(subscriber_id)))
        last = rows[-1][0]


@dataclass(frozen=True)
class Query:
    """Who EXPRESSION selects and the variant each gets, as a query for the database to run:
    ONLY are the issue's `only` expressions in the order of the variant keys' numbers, so that
    a subscriber matching the 1st and 3rd gets `email+1+3`, as `Rendered.variant_for` chooses."""

    expression: str
    only: tuple[str, ...] = ()

    def rows(self, session: Session) -> Select[int, str, str]:
        """(subscriber id, email, variant key) of each subscriber selected, in id order."""
        key: ColumnElement[str] = literal("email")
        for number, only in enumerate(self.only, 1):
            condition = selection.resolve(session, only).condition
            key = key + case((condition, literal(f"+{number}")), else_=literal(""))
        segment = selection.resolve(session, self.expression)
        return (
            select(Subscriber.id, Subscriber.email, key.label("variant_key"))
            .where(segment.condition)
            .order_by(Subscriber.id)
        )


class _Chunk:
    """One chunk of subscribers, and which of them each `only` expression matches."""

    def __init__(self, session: Session, ids: list[int]) -> None:
        self.session = session
        self.ids = ids
        self.matched: dict[str, set[int]] = {}

    def matching(self, only: str) -> set[int]:
        if only not in self.matched:
            condition = selection.resolve(self.session, only).condition
            query = select(Subscriber.id).where(Subscriber.id.in_(self.ids), condition)
            self.matched[only] = set(self.session.scalars(query))
        return self.matched[only]

    def predicate(self, subscriber_id: int) -> Matches:
        return lambda only: subscriber_id in self.matching(only)


def size(engine: Engine, expression: str, issue_slug: str) -> tuple[int, int, str]:
    """(how many EXPRESSION selects, how many of them already had ISSUE_SLUG, and a sentence
    saying so, naming the issue and the mailings: see `mailings.AlreadyHad`)."""
    with transaction(engine) as session:
        segment = selection.resolve(session, expression)
        total = segment.count(session)
        had = AlreadyHad(issue_slug)
        had.count_among(session, select(Subscriber.email).where(segment.condition))
        return total, had.count, had.sentence(session) if had.count else ""


def fresh(
    engine: Engine, addressees: Iterable[Addressee], had: AlreadyHad, chunk: int = 5000
) -> Iterator[Addressee]:
    """ADDRESSEES without those who already had the issue, left out (and counted in HAD) as
    `mailings.create` leaves them out."""
    iterator = iter(addressees)
    while batch := list(islice(iterator, chunk)):
        with transaction(engine) as session:
            yield from had.sift(session, batch)
