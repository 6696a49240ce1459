"""The double opt-in email: MJML + text templates, a signed link, one message for all lists.

It is DKIM-signed like every message (smtp.OneConnection) and goes out with an envelope sender
of its own (`verp.confirmation_sender`), so its bounces come back to `newsroom bounces process`
and name the subscriber: a dead address is not mailed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsroom import tokens
from newsroom.database import transaction
from newsroom.errors import NewsroomError
from newsroom.mail import smtp, verp
from newsroom.mail.messages import wire_address
from newsroom.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from newsroom.people import consent
from newsroom.settings import Config
from newsroom.site import Site

INTERVAL = timedelta(hours=24)  # at most one confirmation email per address per day


def token(config: Config, person: Subscriber, list_ids: list[int], now: datetime) -> str:
    hours = config.number("subscribe.confirm_hours")
    payload = {**tokens.for_subscriber(person.id, person.email, person.token_key), "l": list_ids}
    return tokens.make(config, "confirm", payload, now=now, ttl=timedelta(hours=hours))


def link(config: Config, value: str) -> str:
    return f"{config.text('site.base_url').rstrip('/')}/confirm/{value}"


@dataclass(frozen=True)
class Confirmation:
    """A confirmation email and its envelope sender (RFC 5321 §4.5.5: where bounces go)."""

    message: EmailMessage
    envelope_from: str


def build(session: Session, config: Config, person_id: int, now: datetime) -> Confirmation:
    """The confirmation email for every pending subscription of one subscriber."""
    person = session.get_one(Subscriber, person_id)
    pending = session.scalars(
        select(MailingList)
        .join(Subscription, Subscription.list_id == MailingList.id)
        .where(
            Subscription.subscriber_id == person_id,
            Subscription.status == SubscriptionStatus.PENDING,
        )
        .order_by(MailingList.name)
    ).all()
    value = token(config, person, [row.id for row in pending], now)
    hours = config.number("subscribe.confirm_hours")
    expires = (now + timedelta(hours=hours)).astimezone(ZoneInfo(config.text("site.timezone")))
    text = consent.current_text(session, config)
    lists = [{"name": row.name, "description": row.description} for row in pending]
    context = template_context(
        config, person.email, lists, link(config, value), expires, text.text, text.version
    )
    html, plain = render(config, context)
    message = _message(config, person.email, str(context["subject"]), plain, html, now)
    return Confirmation(message, verp.confirmation_sender(config, person.id, person.token_key))


def template_context(
    config: Config,
    email: str,
    lists: list[dict[str, str]],
    url: str,
    expires: datetime,
    consent_text: str,
    consent_version: str,
) -> dict[str, object]:
    """What `confirm.mjml` and `confirm.txt` get (docs/templates.md lists it)."""
    from newsroom.compose import rendering  # see render()

    return {
        "lang": config.text("site.lang"),
        "subject": f"Confirm your subscription to {config.text('site.name')}",
        "site_name": config.text("site.name"),
        "sender": parseaddr(config.text("site.sender"))[1],
        "base_url": config.text("site.base_url"),
        "postal_address": config.text("site.postal_address"),
        "email": email,  # the one thing typed by the requester that we repeat: the address
        "lists": lists,
        "link": url,
        "expires": expires.strftime("%-d %B %Y, %H:%M %Z"),
        "consent_text": consent_text,
        "consent_version": consent_version,
        "theme": config.theme.context(config.text("site.base_url")),  # the logo, colours, font
        "css": rendering.email_css(config),  # an issue's stylesheet: its dark mode, too
    }


def sample_context(config: Config, now: datetime) -> dict[str, object]:
    """A confirmation's context with made-up values: `newsroom check` renders a site's own
    confirmation templates with it before any real one is sent."""
    expires = now.astimezone(ZoneInfo(config.text("site.timezone")))
    lists = [{"name": "All members", "description": "Bulletins and news for every member"}]
    url = link(config, "TOKEN")
    text, version = consent.site_consent_text(config), config.text("subscribe.consent_version")
    return template_context(config, "ann@example.org", lists, url, expires, text, version)


def render(config: Config, context: dict[str, object]) -> tuple[str, str]:
    """The confirmation email's HTML and text parts, from the site's templates or ours."""
    # Loaded when an email is made: the renderer brings Markdown, iCalendar, YAML and Jinja
    # (about 200 modules); every subscribers command imports this module, and without them
    # `subscribers import --help` starts 0.14 s sooner and a 100,000-row import peaks at 77 MB,
    # not 89 MB (bench/bench_import.py --before).
    from newsroom.compose import rendering, templating

    source = templating.render(config, "confirm.mjml", **context)
    html = rendering.email_html(source, config, "confirm.mjml")  # as an issue's email is made
    return html, templating.render(config, "confirm.txt", **context)


def _message(
    config: Config, to: str, subject: str, plain: str, html: str, now: datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config.text("site.sender")
    message["To"] = wire_address(to)  # the bare address: never a name someone typed
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    domain = parseaddr(config.text("site.sender"))[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid("confirm", domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    if config.text("site.reply_to"):
        message["Reply-To"] = config.text("site.reply_to")
    # quoted-printable as the bulk messages are (RFC 2045): 7-bit, so signed bytes travel as is
    message.set_content(plain, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message


def send(config: Config, confirmation: Confirmation) -> None:
    smtp.send_message(config, confirmation.message, confirmation.envelope_from)


def send_due(site: Site, now: datetime, *, touched_at: datetime | None = None) -> int:
    """Send one confirmation email to each pending person who is due one, and count them.

    With TOUCHED_AT (an import): the people whose subscriptions it made pending, unless one was
    sent to them in the last 24 hours. Without (`newsroom subscribers send-confirmations`): the
    pending people who were never sent one (an import with --no-email, or one the relay failed
    partway), so nobody who already had theirs is reminded. Each is marked once the relay took
    it: a crash in between may send one twice, never none; a relay failure says how far it got.
    An address the relay cannot take (it needs SMTPUTF8) is passed over, so it holds up nobody
    after it, and named at the end.
    """
    due_now = Subscription.status == SubscriptionStatus.PENDING
    if touched_at is None:
        due = due_now & Subscriber.confirmation_sent_at.is_(None)
    else:
        due = (
            due_now
            & (Subscription.updated_at == touched_at)
            & (
                Subscriber.confirmation_sent_at.is_(None)
                | (Subscriber.confirmation_sent_at <= now - INTERVAL)
            )
        )
    with transaction(site.engine) as session:
        people = session.scalars(
            select(Subscriber.id)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(due)
            .distinct()
            .order_by(Subscriber.id)
        ).all()
    sent, why = 0, ""
    passed_over: list[str] = []
    with smtp.OneConnection(site.config) as relay:
        for person_id in people:
            with transaction(site.engine) as session:
                built = build(session, site.config, person_id, now)
                email = session.get_one(Subscriber, person_id).email
            try:
                relay.send(built.message, built.envelope_from)
            except smtp.NotOffered as exc:
                passed_over.append(email)
                why = str(exc)
                continue
            except smtp.RelayError as exc:
                raise smtp.RelayError(
                    f"{exc}; {sent} of {len(people)} confirmation emails sent: send the rest "
                    "with `newsroom subscribers send-confirmations`"
                ) from None
            with transaction(site.engine) as session:
                session.get_one(Subscriber, person_id).confirmation_sent_at = now
            sent += 1
    if passed_over:
        more = f" and {len(passed_over) - 5} more" if len(passed_over) > 5 else ""
        raise NewsroomError(
            f"{sent} of {len(people)} confirmation emails sent; not to "
            f"{', '.join(passed_over[:5])}{more}: {why}"
        )
    return sent
