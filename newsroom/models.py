"""The tables and the status words beside them (see CONTEXT.md for what each word means)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    literal,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeDecorator

from newsroom.clock import utcnow


def new_token_key() -> str:
    """A subscriber's token key: 128 random bits, as 32 hex digits."""
    return secrets.token_hex(16)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no zone, PostgreSQL would convert."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Converted(UTCDateTime):
    """A UTCDateTime value converted for the driver already (`utc_once`): bound as it is."""

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None


def utc_once(value: datetime, dialect: Dialect) -> BindParameter[datetime]:
    """VALUE converted for DIALECT's driver once, for the values() of a bulk insert whose rows
    all have that time and leave it out: converting it on every row of every table cost a
    100,000-row import 700,000 conversions, 8 % of its time (bench/bench_import.py)."""
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)  # SQLite's: a string
    return literal(processor(value) if processor else value, _Converted())


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SubscriptionStatus(StrEnum):
    PENDING = "pending"  # asked, not yet confirmed (double opt-in)
    CONFIRMED = "confirmed"  # receives mailings
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # bounce score reached the threshold
    COMPLAINED = "complained"  # marked a message as spam


class ConsentKind(StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    IMPORTED = "imported"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"


class MailingKind(StrEnum):
    ISSUE = "issue"  # `newsroom send`: an audience frozen when it is made
    WELCOME = "welcome"  # a list's welcome issue: a delivery added as each person confirms


class WelcomeStatus(StrEnum):
    WAITING = "waiting"  # owed: its list's welcome issue has not been queued for them yet
    QUEUED = "queued"  # a delivery of the list's welcome mailing (sent, or still to be)
    DROPPED = "dropped"  # never to be sent: too late, or the list names no welcome issue now


class MailingStatus(StrEnum):
    SCHEDULED = "scheduled"  # `send --at`: a worker freezes and sends it at scheduled_at
    SENDING = "sending"  # deliveries are being worked through (or wait for `--resume`)
    PAUSED = "paused"  # stopped by a person, a policy rejection or a run of errors
    DONE = "done"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a sender; left over after a crash it is "uncertain"
    SENT = "sent"  # accepted by the SMTP server (not "delivered")
    DEFERRED = "deferred"  # 4xx: retried after next_attempt_at
    FAILED = "failed"  # 5xx or out of retries
    SKIPPED = "skipped"  # unsubscribed or suppressed after the mailing was frozen


class MailingList(Base):
    __tablename__ = "lists"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    opt_in: Mapped[str] = mapped_column(String(10), default="double")
    # Set when the list left lists.toml with no one on it: its ledger events keep pointing here.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Subscriber(Base):
    __tablename__ = "subscribers"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Double opt-in sends at most one confirmation email per address per 24 hours.
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Folded into every token naming this subscriber (tokens.for_subscriber): erasure deletes
    # the row and with it this value, so no link made before works for whoever comes next.
    token_key: Mapped[str] = mapped_column(String(32), default=new_token_key)
    # Links sent before migration 0002 carry no token key; they keep working for the rows that
    # were there then (an unsubscribe link must, RFC 8058), until the row is erased.
    old_links: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SubscriberTag(Base):
    __tablename__ = "subscriber_tags"
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "list_id"),
        Index("ix_subscriptions_list_status", "list_id", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"))
    status: Mapped[str] = mapped_column(String(20), default=SubscriptionStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentText(Base):
    """A consent statement as shown to people, kept so each event can prove what was agreed."""

    __tablename__ = "consent_texts"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentEvent(Base):
    """The append-only consent ledger: nothing updates or deletes a row except erasure."""

    __tablename__ = "consent_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(40), default="")  # one-click, link, admin, ...
    source: Mapped[str] = mapped_column(String(40), default="")  # cli, web, import, bounce, ...
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    consent_text_id: Mapped[int | None] = mapped_column(
        ForeignKey("consent_texts.id"), nullable=True
    )
    detail: Mapped[str] = mapped_column(Text, default="")
    # An import's original evidence of the person's consent, as JSON (`imported` events, issue
    # #15): opt-in and confirmation time and IP as the export had them. Erasure clears it.
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True)


class Suppression(Base):
    """Salted hashes of erased addresses, so a later import cannot silently re-add them."""

    __tablename__ = "suppressions"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Mailing(Base):
    """One issue sent to one segment expression, with its audience frozen at creation."""

    __tablename__ = "mailings"
    id: Mapped[int] = mapped_column(primary_key=True)
    issue_slug: Mapped[str] = mapped_column(String(200), index=True)
    issue_path: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    # With saved segments expanded (segments.unparse): it means what it meant when frozen.
    expression: Mapped[str] = mapped_column(Text)
    # The expression as given, saved names and all, when it differs; "" otherwise.
    expression_given: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Who it comes from (delivery/letterhead.py), chosen when it is made; "" before 0003.
    sender: Mapped[str] = mapped_column(Text, default="", server_default="")
    reply_to: Mapped[str] = mapped_column(Text, default="", server_default="")
    list_id: Mapped[str] = mapped_column(Text, default="", server_default="")
    # A welcome mailing (issue #16, item 3) is never frozen: its expression is its list's slug.
    kind: Mapped[str] = mapped_column(
        String(20), default=MailingKind.ISSUE, server_default=MailingKind.ISSUE.value
    )
    status: Mapped[str] = mapped_column(String(20), default=MailingStatus.SENDING)
    paused_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A scheduled mailing (`send --at`, issue #16) is a row with no variants or deliveries
    # until a worker freezes it at SCHEDULED_AT; FROZEN_AT says when its audience was frozen
    # (None: not yet), and retries are counted from then. AGAIN and EARLY keep `--again` and
    # `--now` (sent before the issue's date) for the freeze.
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    frozen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    again: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    early: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class MailingVariant(Base):
    """A rendering of the issue for one audience variant, frozen with the mailing."""

    __tablename__ = "mailing_variants"
    __table_args__ = (UniqueConstraint("mailing_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    mailing_id: Mapped[int] = mapped_column(ForeignKey("mailings.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """One message of a mailing to one address.

    Deliveries are written up to a million in one statement (a mailing's freeze), so the table
    carries only what that statement must keep up (bench/bench_scale.py, bench/RESULTS.md):
    - One index by address answers both "one delivery per address per mailing" and "has this
      address already had this issue?" (a second index by address cost 4 s of a 20 s freeze).
    - No foreign keys: PostgreSQL checks one with a trigger per row, about 4 s a million each.
      The code keeps both references instead: a mailing's deliveries are written in the
      transaction that makes it (or freezes a scheduled one), and mailings are never deleted;
      erasure sets `subscriber_id` to NULL itself (people/erasure.py), and whoever writes
      deliveries holds erasure off until its commit (`erasure.hold_off`), so nobody erased
      while a mailing is frozen is left in it.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("email", "mailing_id"),
        Index("ix_deliveries_work", "mailing_id", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    mailing_id: Mapped[int] = mapped_column(Integer)  # mailings.id (kept by the code: see above)
    subscriber_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    email: Mapped[str] = mapped_column(String(320))
    variant_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_response: Mapped[str] = mapped_column(Text, default="")
    # When it joined a mailing made earlier (a welcome); None: when the mailing was made. Its
    # retries run out `sending.retry_hours` after this.
    added_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Welcome(Base):
    """A person's welcome to one list, owed from the moment they were confirmed on it.

    The unique (list, subscriber) pair is the rule that nobody is welcomed to a list twice,
    whoever confirms them how often (a second confirmation, a re-import); erasure deletes it
    with the subscriber."""

    __tablename__ = "welcomes"
    __table_args__ = (
        UniqueConstraint("list_id", "subscriber_id"),
        Index("ix_welcomes_status", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default=WelcomeStatus.WAITING)
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True, unique=True
    )
    reason: Mapped[str] = mapped_column(Text, default="")  # why it waits, or was dropped


class BounceEvent(Base):
    """A scored bounce of one subscriber (hard 1, soft 0.5); scores add up over a window."""

    __tablename__ = "bounce_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=True, index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # hard, soft, complaint
    score: Mapped[float] = mapped_column(Float, default=0.0)
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProcessedReport(Base):
    """A bounce or abuse report already handled, remembered by Message-ID (safe under cron)."""

    __tablename__ = "processed_reports"
    message_id: Mapped[str] = mapped_column(String(998), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ClientWindow(Base):
    """How many subscribe requests one client made in one slot (a sixtieth) of the window of
    `web.subscribe_rate`, for the limit several web servers share on PostgreSQL (issue #17). The
    key is a keyed hash of the client's address and the slot, never the address: two rows cannot
    be linked to each other or to anyone. ENDS_AT: when the slot stops counting (the row goes)."""

    __tablename__ = "client_windows"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    count: Mapped[int] = mapped_column(Integer)


class SendWindow(Base):
    """When the next message may go at one of the site's sending rates, kept for every sender
    of the site together (issue #17): KEY is '' for `sending.rate`, a domain for its rate in
    `sending.domain_rates`; FREE_AT is the first instant no sender has reserved yet, in seconds
    since the epoch on the database's own clock (delivery/sitepace.py)."""

    __tablename__ = "send_windows"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    free_at: Mapped[float] = mapped_column(Float)
