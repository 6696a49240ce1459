"""The consent ledger: append-only events, and the consent texts (version + sha256) behind them.

Nothing in newsroom updates or deletes a ConsentEvent except `forget`, which erasure calls to
strip the personal data (subscriber link, IP address, user agent) from a person's events.
tests/test_consent.py checks that no other code touches the table that way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from newsroom.models import Base, ConsentEvent, ConsentKind, ConsentText, MailingList, utc_once
from newsroom.settings import Config


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def site_consent_text(config: Config) -> str:
    """The consent statement shown on the subscribe page, with the site's name filled in."""
    return config.text("subscribe.consent_text").replace("{site}", config.text("site.name"))


def consent_text(session: Session, text: str, version: str) -> ConsentText:
    """The stored row for TEXT (found by its sha256, or added): events point at it."""
    digest = text_digest(text)
    row = session.scalars(select(ConsentText).where(ConsentText.sha256 == digest)).first()
    if row is None:
        row = ConsentText(version=version, sha256=digest, text=text)
        session.add(row)
        session.flush()
    return row


def current_text(session: Session, config: Config) -> ConsentText:
    return consent_text(
        session, site_consent_text(config), config.text("subscribe.consent_version")
    )


@dataclass(frozen=True)
class Origin:
    """Where a change came from: source (cli, web, import, bounce, email), method, and for web
    actions the client's IP address and user agent."""

    source: str
    method: str = ""
    ip: str | None = None
    user_agent: str | None = None


def record(
    session: Session,
    kind: ConsentKind,
    *,
    subscriber_id: int | None,
    list_id: int | None,
    origin: Origin,
    now: datetime,
    consent_text_id: int | None = None,
    detail: str = "",
) -> None:
    """Append one event to the ledger."""
    record_many(
        session,
        [
            event_row(
                kind,
                subscriber_id=subscriber_id,
                list_id=list_id,
                origin=origin,
                now=now,
                consent_text_id=consent_text_id,
                detail=detail,
            )
        ],
    )


# The ledger's columns as `event_row` fills them (all but the id), for statements built once.
EVENT_COLUMNS = tuple(c.key for c in ConsentEvent.__table__.columns if not c.primary_key)


def event_row(
    kind: ConsentKind,
    *,
    subscriber_id: int | None,
    list_id: int | None,
    origin: Origin,
    now: datetime,
    consent_text_id: int | None = None,
    detail: str = "",
    evidence: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """EVIDENCE: what an import's file showed of the person's own consent (opt-in and
    confirmation time and IP, exportformats.EVIDENCE), kept as it was written there."""
    return {
        "subscriber_id": subscriber_id,
        "list_id": list_id,
        "kind": kind.value,
        "method": origin.method,
        "source": origin.source,
        "at": now,
        "ip": origin.ip,
        "user_agent": (origin.user_agent or None) and origin.user_agent[:1000],
        "consent_text_id": consent_text_id,
        "detail": detail,
        "evidence": evidence_json(evidence),
    }


def evidence_json(evidence: Mapping[str, str] | None) -> str | None:
    """The ledger's `evidence` column for an event with EVIDENCE (event_row)."""
    return json.dumps(dict(evidence), ensure_ascii=False) if evidence else None


def from_mailing(mailing_id: int, more: str = "") -> str:
    """The detail of an unsubscribe that came through a mailing's own links (one-click, the
    unsubscribe page, the mailto address): "mailing 12", then MORE. It is the ledger's link from
    a change to the mailing behind it, which `newsroom mailings show` counts (`came_from`);
    written in the detail, which the subject access export shows, rather than a column of its
    own, so that no migration is needed."""
    return f"mailing {mailing_id} {more}" if more else f"mailing {mailing_id}"


def came_from(mailing_id: int) -> ColumnElement[bool]:
    """Events whose detail `from_mailing` wrote for MAILING_ID ("mailing 1" is not "mailing 12")."""
    marker = from_mailing(mailing_id)
    return or_(ConsentEvent.detail == marker, ConsentEvent.detail.startswith(f"{marker} "))


def came_from_a_mailing() -> ColumnElement[bool]:
    """Events whose detail `from_mailing` wrote, for any mailing (`mailing_of` says which)."""
    return ConsentEvent.detail.startswith("mailing ")


def mailing_of(detail: str) -> int | None:
    """The mailing `from_mailing` named in DETAIL, or None: "mailing 12 (…)" → 12."""
    found = re.match(r"mailing ([0-9]{1,18})(?: |$)", detail)
    return int(found.group(1)) if found else None


# Every change of a subscription appends an event, so an event is the sign that a mailing's
# audience may have shrunk: on PostgreSQL whoever appends one sends this NOTIFY in the same
# transaction (delivered at commit), and senders LISTEN for it before each message (changes.py).
CHANGED_CHANNEL = "newsroom_consent"
NOTIFY_CHANGED = f"NOTIFY {CHANGED_CHANNEL}"


def record_many(
    session: Session, rows: Sequence[dict[str, Any]], *, at: datetime | None = None
) -> None:
    """Append many events at once (Core bulk insert: imports write thousands); with AT, the
    time of them all, which the rows then leave out (models.utc_once)."""
    if rows:
        statement = insert(Base.metadata.tables[ConsentEvent.__tablename__])
        if at is not None:
            statement = statement.values(at=utc_once(at, session.get_bind().dialect))
        session.execute(statement, list(rows))
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(NOTIFY_CHANGED))


def record_each(
    session: Session,
    subscriber_ids: Select[int],
    kind: ConsentKind,
    *,
    list_id: int,
    origin: Origin,
    now: datetime,
    detail: str = "",
) -> None:
    """Append the same event for every subscriber SUBSCRIBER_IDS selects, in the database itself
    (INSERT ... SELECT: a sync may unsubscribe thousands)."""
    row = event_row(
        kind, subscriber_id=None, list_id=list_id, origin=origin, now=now, detail=detail
    )
    table = Base.metadata.tables[ConsentEvent.__tablename__]
    ids = subscriber_ids.subquery()
    (id_column,) = ids.c
    columns = [
        id_column if name == "subscriber_id" else literal(row[name], table.c[name].type)
        for name in EVENT_COLUMNS
    ]
    session.execute(insert(table).from_select(list(EVENT_COLUMNS), select(*columns)))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(NOTIFY_CHANGED))


def ledger(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    """A subscriber's events, oldest first, as plain data (list slug, consent text and hash)."""
    query = (
        select(ConsentEvent, MailingList.slug, ConsentText)
        .outerjoin(MailingList, MailingList.id == ConsentEvent.list_id)
        .outerjoin(ConsentText, ConsentText.id == ConsentEvent.consent_text_id)
        .where(ConsentEvent.subscriber_id == subscriber_id)
        .order_by(ConsentEvent.at, ConsentEvent.id)
    )
    return [
        {
            "at": event.at.isoformat(),
            "kind": event.kind,
            "list": slug,
            "source": event.source,
            "method": event.method,
            "ip": event.ip,
            "user_agent": event.user_agent,
            "consent_version": text.version if text else None,
            "consent_sha256": text.sha256 if text else None,
            "consent_text": text.text if text else None,
            "detail": event.detail,
            "evidence": json.loads(event.evidence) if event.evidence else None,
        }
        for event, slug, text in session.execute(query)
    ]


def forget(session: Session, subscriber_id: int) -> None:
    """Erasure only: strip the personal data from a person's events (the imported evidence
    holds IP addresses too); the events stay."""
    session.execute(
        update(ConsentEvent)
        .where(ConsentEvent.subscriber_id == subscriber_id)
        .values(subscriber_id=None, ip=None, user_agent=None, evidence=None)
    )
