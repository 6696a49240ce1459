"""Bounces and complaints: read reports, match them to a delivery through VERP, score, act.

A report is matched only through the signed VERP envelope address (newsroom.verp) found in its
own delivery headers or in the returned original's Return-Path — never through an address in
the report's text, which anyone can write. Delivery status notifications (RFC 3464) and the
non-standard formats flufl.bounce knows are bounces: permanent failures score
`bounces.hard_score`, temporary ones `bounces.soft_score` at most once a day, and a total of
`bounces.threshold` within `bounces.window_days` marks the subscriptions `bounced` (Mailman's
scheme). Abuse reports (ARF, RFC 5965) unsubscribe from every list at once. A person's message to
the List-Unsubscribe mailto address (RFC 2369) — which is the VERP address too — unsubscribes
from the lists of that delivery's mailing, matched through the address it was sent to alone.

A confirmation email has an envelope address of its own, naming its subscriber and bound to that
row's token key: when it bounces hard (or draws a complaint or a mailto request) the address's
pending subscriptions end there, and a soft bounce is counted and changes none. A `--test`
copy's address is recognised, and ignored as one.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from flufl.bounce import all_failures
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from newsroom import database
from newsroom.delivery import mailsources
from newsroom.mail import verp
from newsroom.models import (
    BounceEvent,
    ConsentKind,
    Delivery,
    Mailing,
    ProcessedReport,
    Subscriber,
    SubscriptionStatus,
)
from newsroom.people import consent, selection, subscribers
from newsroom.people.consent import Origin
from newsroom.settings import Config

Kind = Literal["hard", "soft", "complaint"]  # what a bounce event records
ReportKind = Kind | Literal["unsubscribe"]
MAX_REPORT_BYTES = 2_000_000  # a DSN is a few KB; anything this large is not one worth reading
ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w.-]+", re.ASCII)
# Row ids are Integer columns: PostgreSQL's int4 answers a larger value with an error rather
# than with no row, and a confirmation's id is looked up before its tag can be checked.
MAX_ROW_ID = 2**31 - 1
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
MAILTO = Origin("email", "mailto")


@dataclass
class BounceReport:
    """What one message turned out to be."""

    message_id: str
    kind: ReportKind | None = None
    delivery_id: int | None = None
    confirmation: tuple[int, str] | None = None  # a confirmation's subscriber id and tag
    diagnostic: str = ""
    ignored: str = ""  # why nothing was done, if nothing was


@dataclass
class Outcome:
    """Counts of one processing run, and why reports were ignored."""

    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unsubscribes: int = 0  # mailto unsubscribe requests handled
    duplicates: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    bounced: list[str] = field(default_factory=list)  # addresses whose subscriptions bounced
    unconfirmed: list[str] = field(default_factory=list)  # whose confirmation email bounced

    def ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1


def read_report(config: Config, raw: bytes) -> BounceReport:
    """Classify one raw message and find the delivery it is about."""
    if len(raw) > MAX_REPORT_BYTES:
        return BounceReport(_fallback_id(raw), ignored=f"larger than {MAX_REPORT_BYTES} bytes")
    try:
        message = email.message_from_bytes(raw)
    except Exception:  # the parser is lenient; this is for input it still cannot take
        return BounceReport(_fallback_id(raw), ignored="malformed")
    report = BounceReport(_message_id(message, raw))
    report.kind, report.diagnostic = _classify(message)
    if report.kind is None:
        report.ignored = report.diagnostic or "not a bounce, complaint or unsubscribe"
        return report
    # A request names its delivery only by the address it was sent to: a message attached to
    # it (a forwarded original with its Return-Path) could be anybody's.
    returned = report.kind != "unsubscribe"
    found, looked_like_ours = _find_address(config, message, returned)
    report.delivery_id = verp.delivery_id(config, found) if found else None
    report.confirmation = verp.confirmation_claim(config, found) if found else None
    if found and verp.is_test_copy(config, found):
        report.ignored = "a test copy"
    elif not found:
        report.ignored = (
            "forged or unknown token" if looked_like_ours else "no newsroom address in it"
        )
    return report


def _message_id(message: email.message.Message, raw: bytes) -> str:
    found = str(message.get("Message-ID", "")).strip()
    return found[:900] if found else _fallback_id(raw)


def _fallback_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _classify(message: email.message.Message) -> tuple[ReportKind | None, str]:
    """(kind, diagnostic) — kind None with a reason when this is not a failure report or an
    unsubscribe request. The reports' own structure is read first (ARF, DSN); a request is
    recognised before flufl.bounce's heuristics, which guess from free text a person wrote."""
    feedback = _part(message, "message/feedback-report")
    if feedback is not None or "feedback-report" in str(message.get("Content-Type", "")).lower():
        fields = _fields(feedback)
        feedback_type = fields.get("feedback-type", "abuse").lower()
        if feedback_type == "not-spam":
            return None, "feedback report of type not-spam"
        return "complaint", f"feedback report: {feedback_type}"
    status = _part(message, "message/delivery-status")
    if status is not None:
        return _from_dsn(status)
    if _is_unsubscribe(message):
        return "unsubscribe", "message to the List-Unsubscribe address (RFC 2369)"
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # flufl.bounce's heuristics can trip on odd input: then it is not a bounce
        return None, "unreadable by the bounce detectors"
    if permanent:
        return "hard", _first_line(message)
    if temporary:
        return "soft", _first_line(message)
    return None, ""


def _from_dsn(part: email.message.Message) -> tuple[Kind | None, str]:
    """RFC 3464: Action failed or Status 5.x.x is permanent; delayed or 4.x.x is temporary."""
    kinds: list[Kind] = []
    diagnostic = ""
    payload = part.get_payload()
    blocks = (
        [b for b in payload if isinstance(b, email.message.Message)]
        if isinstance(payload, list)
        else []
    )
    for block in blocks[1:] if len(blocks) > 1 else blocks:  # the first block is per-message
        action = str(block.get("Action", "")).strip().lower()
        status = str(block.get("Status", "")).strip()
        if action == "failed" or status.startswith("5"):
            kinds.append("hard")
        elif action == "delayed" or status.startswith("4"):
            kinds.append("soft")
        # unfolded (RFC 5322 §2.2.3): the ledger and `newsroom bounces` show it on one line
        diagnostic = diagnostic or " ".join(
            " ".join(str(block.get(h, "")).split())
            for h in ("Status", "Diagnostic-Code")
            if block.get(h)
        )
    if "hard" in kinds:
        return "hard", diagnostic
    if "soft" in kinds:
        return "soft", diagnostic
    return None, "delivery status notification without a failure"


def _is_unsubscribe(message: email.message.Message) -> bool:
    """A request sent to our List-Unsubscribe mailto address by a person or their mail provider:
    the subject the URL asks for, from a real sender, and nothing that answers or reports."""
    if message.get_content_type() == "multipart/report":  # RFC 6522: every kind of report
        return False
    # RFC 5321 §4.5.5 and RFC 3834 §3.3: notifications travel with a null reverse-path, recorded
    # by the delivering server as `Return-Path: <>`; a request comes from somebody's mailbox.
    if any("".join(str(v).split()) == "<>" for v in message.get_all("Return-Path", [])):
        return False
    # RFC 3834 §5: an auto-reply (out of office) answers the issue; it asks for nothing.
    # (auto-generated is allowed: a provider may send the request on the person's behalf.)
    submitted = str(message.get("Auto-Submitted", "no")).split(";")[0].strip().lower()
    if submitted == "auto-replied" or message.get("X-Autoreply") or message.get("X-Autorespond"):
        return False
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return False
    return _subject(message).casefold() == verp.UNSUBSCRIBE_SUBJECT


def _subject(message: email.message.Message) -> str:
    """The Subject decoded (RFC 2047) with its whitespace collapsed; empty if unreadable."""
    raw = str(message.get("Subject", ""))[:1000]
    try:
        text = str(email.header.make_header(email.header.decode_header(raw)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return ""
    return " ".join(text.split())


def _part(message: email.message.Message, content_type: str) -> email.message.Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _fields(part: email.message.Message | None) -> dict[str, str]:
    if part is None:
        return {}
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else [part]
    found: dict[str, str] = {}
    for block in blocks:
        if isinstance(block, email.message.Message):
            for key, value in block.items():
                found.setdefault(key.lower(), str(value).strip())
    if not found and isinstance(payload, str):
        for line in payload.splitlines():
            key, _, value = line.partition(":")
            if value:
                found.setdefault(key.strip().lower(), value.strip())
    return found


def _first_line(message: email.message.Message) -> str:
    subject = str(message.get("Subject", "")).strip()
    return subject[:200]


def _find_address(
    config: Config, message: email.message.Message, returned: bool = True
) -> tuple[str, bool]:
    """The first address of ours (a delivery's VERP address, a confirmation's, a test copy's)
    in the message's envelope headers or (if RETURNED) in the returned original's Return-Path;
    and whether something looked like our bounce address at all. Never the From header: anyone
    can write any address there. A confirmation's tag is checked later, against its row."""
    candidates: list[str] = []
    for header in ENVELOPE_HEADERS:
        candidates += [str(v) for v in message.get_all(header, [])]
    for part in message.walk() if returned else ():
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            candidates += _return_paths(part)
    prefix = config.text("sending.bounce_address").split("@")[0].lower() + "+"
    looked_like_ours = False
    for text in candidates:
        for address in ADDRESS.findall(text):
            looked_like_ours |= address.lower().startswith(prefix)
            if (
                verp.delivery_id(config, address) is not None
                or verp.confirmation_claim(config, address) is not None
                or verp.is_test_copy(config, address)
            ):
                return address, True
    return "", looked_like_ours


def _return_paths(part: email.message.Message) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [
            str(v)
            for m in payload
            if isinstance(m, email.message.Message)
            for v in m.get_all("Return-Path", [])
        ]
    if isinstance(payload, str):
        headers = email.message_from_string(payload.lstrip())
        return [str(v) for v in headers.get_all("Return-Path", [])]
    return []


def apply(
    session: Session, config: Config, report: BounceReport, outcome: Outcome, now: datetime
) -> None:
    """Act on one report inside the caller's transaction, remembering it by Message-ID."""
    if session.get(ProcessedReport, report.message_id) is not None:
        outcome.duplicates += 1
        return
    if not report.ignored:
        report.ignored = _act(session, config, report, outcome, now)
    if report.ignored:
        outcome.ignore(report.ignored)
        session.add(
            ProcessedReport(
                message_id=report.message_id, outcome="ignored", reason=report.ignored, at=now
            )
        )
        return
    assert report.kind is not None
    session.add(
        ProcessedReport(
            message_id=report.message_id,
            outcome=report.kind,
            reason=report.diagnostic[:2000],
            at=now,
        )
    )


def _act(
    session: Session, config: Config, report: BounceReport, outcome: Outcome, now: datetime
) -> str:
    """Act on a report that names a delivery or a confirmation; returns why nothing was done,
    if nothing was."""
    assert report.kind is not None
    if report.confirmation is not None:
        return _confirmation_report(session, config, report, outcome, now)
    delivery = session.get(Delivery, report.delivery_id) if report.delivery_id else None
    if delivery is None or delivery.subscriber_id is None:
        return "unknown delivery (erased or deleted)"
    if report.kind == "unsubscribe":
        outcome.unsubscribes += 1
        report.diagnostic = _unsubscribe(session, delivery, now)
    else:
        record_bounce(session, config, delivery, report.kind, report.diagnostic, now, outcome)
    return ""


# What a report about a confirmation email is called in the ledger, and what it does to the
# address's pending subscriptions: they were never confirmed, so one hard bounce, a complaint or
# a request ends them (no score to wait for), and a soft bounce ends nothing.
_CONFIRMATION_REPORTS: dict[ReportKind, tuple[str, SubscriptionStatus | None]] = {
    "hard": ("hard bounce of the confirmation email", SubscriptionStatus.BOUNCED),
    "soft": ("soft bounce of the confirmation email", None),
    "complaint": ("complaint about the confirmation email", SubscriptionStatus.COMPLAINED),
    "unsubscribe": ("request to the confirmation email's address", SubscriptionStatus.UNSUBSCRIBED),
}


def _confirmation_report(
    session: Session, config: Config, report: BounceReport, outcome: Outcome, now: datetime
) -> str:
    """A report about a confirmation email: checked against its subscriber's token key (an id
    erased and given to someone new has a new key), then acted on; returns why not, if not."""
    assert report.confirmation is not None and report.kind is not None
    subscriber_id, tag = report.confirmation
    person = session.get(Subscriber, subscriber_id) if subscriber_id <= MAX_ROW_ID else None
    if person is None or not verp.confirmation_genuine(config, person.id, person.token_key, tag):
        return "forged or unknown token"
    kind = report.kind
    outcome.hard += kind == "hard"
    outcome.soft += kind == "soft"
    outcome.complaints += kind == "complaint"
    outcome.unsubscribes += kind == "unsubscribe"
    what, status = _CONFIRMATION_REPORTS[kind]
    report.diagnostic = f"{what}: {report.diagnostic}"[:2000]
    if kind != "unsubscribe":  # listed by `newsroom bounces`, scoring nothing
        session.add(
            BounceEvent(
                subscriber_id=person.id,
                kind=kind,
                score=0.0,
                diagnostic=report.diagnostic,
                at=now,
            )
        )
    if status is None:
        return ""
    pending = [
        (sub, slug)
        for sub, slug in subscribers.subscriptions_of(session, person.id, None)
        if sub.status == SubscriptionStatus.PENDING
    ]
    origin = MAILTO if kind == "unsubscribe" else Origin("bounce-report", kind)
    ended = subscribers.change_status(session, pending, status, origin, now, report.diagnostic)
    if ended and kind == "hard":
        outcome.unconfirmed.append(person.email)
    return ""


def _unsubscribe(session: Session, delivery: Delivery, now: datetime) -> str:
    """A mailto request about DELIVERY: leave the lists its https one-click link leaves
    (`selection.unsubscribe_lists`, the one rule for both); returns what the ledger says."""
    assert delivery.subscriber_id is not None
    mailing = session.get_one(Mailing, delivery.mailing_id)
    chosen = selection.unsubscribe_lists(session, mailing.expression)
    mine = subscribers.subscriptions_of(session, delivery.subscriber_id, chosen)
    detail = consent.from_mailing(
        mailing.id, f"({mailing.issue_slug}): email to the List-Unsubscribe address"
    )
    left = subscribers.change_status(
        session, mine, SubscriptionStatus.UNSUBSCRIBED, MAILTO, now, detail
    )
    return f"{detail}: left {', '.join(left) or 'nothing (already left)'}"


def record_bounce(
    session: Session,
    config: Config,
    delivery: Delivery,
    kind: Kind,
    diagnostic: str,
    now: datetime,
    outcome: Outcome | None = None,
    source: str = "bounce-report",
) -> None:
    """Score one failure of DELIVERY (from a report, or a 5xx while sending) and act on it."""
    outcome = outcome or Outcome()
    subscriber_id = delivery.subscriber_id
    if subscriber_id is None:
        return
    origin = Origin(source=source, method=kind)
    if kind == "complaint":
        outcome.complaints += 1
        session.add(
            BounceEvent(
                subscriber_id=subscriber_id,
                delivery_id=delivery.id,
                kind=kind,
                score=0.0,
                diagnostic=diagnostic,
                at=now,
            )
        )
        _set_status(
            session,
            subscriber_id,
            SubscriptionStatus.COMPLAINED,
            origin,
            now,
            diagnostic,
        )
        return
    score = config.number(f"bounces.{kind}_score")
    if kind == "soft" and _soft_scored_today(session, subscriber_id, now):
        score = 0.0  # a soft bounce counts at most once a day: a slow server is not a dead address
    outcome.hard += kind == "hard"
    outcome.soft += kind == "soft"
    session.add(
        BounceEvent(
            subscriber_id=subscriber_id,
            delivery_id=delivery.id,
            kind=kind,
            score=score,
            diagnostic=diagnostic[:2000],
            at=now,
        )
    )
    session.flush()
    total = _score(session, config, subscriber_id, now)
    days = config.integer("bounces.window_days")
    detail = f"{kind} bounce scored {score:g} (total {total:g} in {days} days): {diagnostic}"
    consent.record(
        session,
        ConsentKind.BOUNCED,
        subscriber_id=subscriber_id,
        list_id=None,
        origin=origin,
        now=now,
        detail=detail[:2000],
    )
    threshold = config.number("bounces.threshold")
    reason = f"bounce score {total:g} reached the threshold {threshold:g}"
    bounced = SubscriptionStatus.BOUNCED
    if total >= threshold and _set_status(session, subscriber_id, bounced, origin, now, reason):
        outcome.bounced.append(delivery.email)


def _soft_scored_today(session: Session, subscriber_id: int, now: datetime) -> bool:
    since = now - timedelta(days=1)
    found = session.scalar(
        select(func.count())
        .select_from(BounceEvent)
        .where(
            BounceEvent.subscriber_id == subscriber_id,
            BounceEvent.kind == "soft",
            BounceEvent.score > 0,
            BounceEvent.at > since,
        )
    )
    return bool(found)


def _score(session: Session, config: Config, subscriber_id: int, now: datetime) -> float:
    since = now - timedelta(days=config.integer("bounces.window_days"))
    total = session.scalar(
        select(func.coalesce(func.sum(BounceEvent.score), 0.0)).where(
            BounceEvent.subscriber_id == subscriber_id, BounceEvent.at > since
        )
    )
    return float(total or 0.0)


def _set_status(
    session: Session,
    subscriber_id: int,
    status: SubscriptionStatus,
    origin: Origin,
    now: datetime,
    detail: str,
) -> bool:
    """Move every active subscription of a subscriber to STATUS, one ledger event each."""
    mine = subscribers.subscriptions_of(session, subscriber_id, None)
    return bool(subscribers.change_status(session, mine, status, origin, now, detail[:2000]))


def process(
    engine: Engine,
    config: Config,
    where: str,
    *,
    now: datetime,
    delete: bool = False,
    move_to: str = "",
) -> Outcome:
    """Handle every report in the source WHERE once; each in its own transaction, so a crash
    loses nothing and a report seen again is skipped by its Message-ID."""
    outcome = Outcome()
    source = mailsources.open_source(config, where)
    try:
        for key, raw in source.messages():
            report = read_report(config, raw)
            with database.transaction(engine) as session:
                apply(session, config, report, outcome, now)
            if move_to:
                source.move(key, move_to)
            elif delete:
                source.delete(key)
    finally:
        source.close()
    return outcome


def recent(session: Session, since: datetime) -> list[dict[str, object]]:
    """Bounces and complaints since SINCE, newest first, with their diagnostics."""
    rows = session.execute(
        select(BounceEvent, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == BounceEvent.subscriber_id)
        .where(BounceEvent.at >= since)
        .order_by(BounceEvent.at.desc(), BounceEvent.id.desc())
    ).all()
    return [
        {"at": event.at, "email": email_address or "(erased)", "kind": event.kind,
         "score": event.score, "diagnostic": event.diagnostic}
        for event, email_address in rows
    ]  # fmt: skip
