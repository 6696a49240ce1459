"""What `newsroom send` is about to do: the issue rendered per variant, its audience, preflight.

Preflight runs before anything is written or sent: the secret key, the sender address, the DKIM
key, the rate settings, the issue (all its errors at once, an unknown list in `to:` or an `only`
block among them), the segment expression, and a connection to the relay, which for a real
mailing must be `newsroom dev-smtp` while the settings are placeholders (readiness.py). Any
failure stops the send with one line saying what to fix.

`check_issue` is `newsroom check` for one issue (errors, then warnings, the lists and tags it
names among them), and `preview_for` what one subscriber's message looks like (`preview --as`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from newsroom import database, segments, tokens
from newsroom.compose import issues, personalise, rendering
from newsroom.compose import preflight as issue_preflight  # outbox.preflight checks the settings
from newsroom.compose.rendering import Rendered
from newsroom.database import transaction
from newsroom.delivery import audience, letterhead, mailings, readiness, schedule
from newsroom.delivery.letterhead import Letterhead
from newsroom.delivery.mailings import Addressee, AlreadyHad, Content
from newsroom.delivery.sending import signer, templates
from newsroom.errors import NewsroomError, Problem, ProblemsError
from newsroom.mail import asyncrun, verp
from newsroom.mail.messages import DateHeader, Recipient, new_message_id, parse_sender, wire_address
from newsroom.mail.ratelimit import RateLimiter, domain_rates, per_second
from newsroom.mail.smtp import SENT, UNSENDABLE, Outgoing, Pool, relay_name
from newsroom.models import Mailing, MailingStatus
from newsroom.people import lists, savedsegments, selection, subscribers
from newsroom.site import Site


@dataclass
class Plan:
    """An issue ready to send: where it is, its subject, its variants, and how to choose one;
    whom to (the target as given, and as a mailing keeps it) and from whom."""

    path: Path
    shown: str  # the path as mailings record it: relative to the site when inside it
    slug: str
    title: str
    default_to: str
    variants: dict[str, Content]
    choose: Callable[[Callable[[str], bool]], str]
    published: datetime  # the issue's date as an instant: no real mailing goes before it
    target: str = ""  # --to, else the issue's `to:`; may name saved segments
    letterhead: Letterhead | None = None
    saved: dict[str, str] = field(default_factory=dict)  # segments.toml: name → expression
    warnings: list[Problem] = field(default_factory=list)  # about the lists' own senders
    # The issue's `only` expressions, saved names expanded, in the order of the variant keys'
    # numbers (`email+1+3`): what `choose` matches, for the database to match (audience.Query).
    only: tuple[str, ...] = ()


def find_issue(site: Site, name: str) -> Path:
    """ISSUE as a path, or a slug or file name in the site's issues/ folder."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    folder = site.issues_dir
    for candidate in (folder / name, folder / f"{name}.md", *sorted(folder.glob(f"*-{name}.md"))):
        if candidate.is_file():
            return candidate.resolve()
    raise NewsroomError(
        f"no issue {name!r}: give a file (issues/2020-12-24-save-our-socialists.md) or a slug "
        f"of a file in {folder}"
    )


def plan(site: Site, issue: str, to: str | None = None, sender: str | None = None) -> Plan:
    """Load and render ISSUE once per variant for a mailing TO an expression (default: its
    `to:`) from SENDER (`--from`: default, the first list's or the site's); raises
    ProblemsError listing every error, SegmentError for a bad TO."""
    path = find_issue(site, issue)
    clash = issues.slug_problems([path], site.config).get(path, [])
    try:
        loaded = issues.load_issue(path, site.config)
    except ProblemsError as exc:
        raise ProblemsError([*exc.problems, *clash]) from None
    shown = issues.shown_path(path, site.config)
    known = lists.read_lists(site.lists_file)  # the site's lists, as `newsroom check` reads them
    saved = savedsegments.expressions(savedsegments.read(site.segments_file, known))
    wrong = [
        *issue_preflight.unknown_lists(loaded, shown, known),
        *issue_preflight.unknown_segments(loaded, shown, saved),
        *clash,
    ]
    if wrong:
        raise ProblemsError(wrong)
    target = to or loaded.to or ""
    node = segments.parse(target, saved) if target else None
    head = letterhead.choose(site.config, known, node, sender)
    rendered = rendering.render(loaded, site.config, head.list_name)
    variants = {
        key: Content(variant.subject, variant.html, variant.text)
        for key, variant in rendered.variants.items()
        if key != "public"  # the web's variant: no private content, fields already filled
    }
    # `only` blocks naming saved segments are matched by what the names stand for today.
    only = {e: segments.unparse(segments.parse(e, saved)) for e in rendered.only_expressions}

    def choose(matches: Callable[[str], bool]) -> str:
        return rendered.variant_for(lambda expression: matches(only[expression]))

    return Plan(
        path,
        shown,
        loaded.slug,
        loaded.title,
        loaded.to or "",
        variants,
        choose,
        loaded.published,
        target,
        head,
        saved,
        letterhead.warnings(site.config, known),
        tuple(only[e] for e in rendered.only_expressions),
    )


def preflight(site: Site, planned: Plan) -> str:
    """Check the settings sending needs, and the target (raises NewsroomError naming the fix);
    returns the target as a mailing keeps it, saved segments expanded."""
    config = site.config
    _ = config.secret_key  # raises ConfigError saying how to set one
    parse_sender(planned.letterhead.sender if planned.letterhead else config.text("site.sender"))
    signer(config)
    per_second(config.text("sending.rate"))
    domain_rates(config.text("sending.domain_rates"))
    with transaction(site.engine) as session:
        return selection.resolve(session, planned.target, planned.saved).plain


def check_relay(site: Site, *, mailing: bool = True, sender: str = "") -> str:
    """Open one connection to the relay, or raise NewsroomError saying why not. For a real
    MAILING (not a --test copy) from SENDER (default: the site's) refuse placeholder settings
    unless the relay is `newsroom dev-smtp` (readiness.NotReady). Returns the relay as the
    question before a send names it."""

    async def go() -> str:
        pool = Pool(site.config, connections=1)
        try:
            return await pool.check()
        finally:
            await pool.close()

    greeting = asyncrun.run(go())
    if mailing:
        readiness.check_relay(site.config, greeting, sender)
    name = relay_name(site.config)
    return f"{name} (newsroom dev-smtp)" if readiness.is_dev_smtp(site.config, greeting) else name


def dry_run(
    site: Site, planned: Plan, expression: str, had: AlreadyHad | None
) -> Iterator[Addressee]:
    """Who a send would freeze, in order: without those in HAD (when not --again)."""
    addressees = audience.addressees(site.engine, expression, planned.choose)
    return addressees if had is None else audience.fresh(site.engine, addressees, had)


def already_had(site: Site, had: AlreadyHad) -> str:
    """HAD's sentence ('3 addresses already had issue …'), or '' when nobody had it."""
    if not had.count:
        return ""
    with transaction(site.engine) as session:
        return had.sentence(session)


def check_history(site: Site, planned: Plan) -> None:
    """Refuse to send an issue whose slug an earlier mailing sent from another issue file that
    is still there: "already had it" and the per-list feeds go by the slug, so they would take
    the other issue for this one."""
    with transaction(site.engine) as session:
        rows = session.execute(
            select(Mailing.id, Mailing.issue_path)
            .where(Mailing.issue_slug == planned.slug, Mailing.issue_path != planned.shown)
            .where(Mailing.status != MailingStatus.CANCELLED)
            .order_by(Mailing.id)
        ).all()
    for mailing_id, path in rows:
        if (site.root / path).is_file():
            raise NewsroomError(
                f'{planned.shown}: mailing {mailing_id} sent the slug "{planned.slug}" from '
                f'{path}, another issue: give this one its own with "slug: ..." in its front '
                "matter, or nobody who had that one would get this one"
            )


def subject(planned: Plan) -> str:
    return next(iter(planned.variants.values())).subject if planned.variants else planned.title


def create(
    site: Site, planned: Plan, expression: str, *, again: bool, now: datetime
) -> mailings.Created:
    """Freeze the mailing of PLANNED to EXPRESSION (the target with saved segments expanded)."""
    _analyze(site)
    return mailings.create(
        site.engine,
        issue_slug=planned.slug,
        issue_path=planned.shown,
        subject=subject(planned),
        expression=expression,
        variants=planned.variants,
        addressees=audience.Query(expression, planned.only),
        again=again,
        now=now,
        expression_given=planned.target,
        letterhead=planned.letterhead,
    )


def freeze(
    site: Site, planned: Plan, expression: str, mailing_id: int, now: datetime
) -> mailings.Created | None:
    """Freeze scheduled MAILING_ID with PLANNED (its issue read again) to EXPRESSION (its
    audience, saved segments expanded now): see schedule.freeze."""
    assert planned.letterhead is not None  # plan() always chooses one
    _analyze(site)
    return schedule.freeze(
        site.engine,
        mailing_id,
        issue_slug=planned.slug,
        subject=subject(planned),
        expression=expression,
        letterhead=planned.letterhead,
        variants=planned.variants,
        addressees=lambda: audience.Query(expression, planned.only),
        now=now,
    )


def _analyze(site: Site) -> None:
    if site.engine.dialect.name == "postgresql":
        # A list imported minutes ago has no planner statistics yet, and a segment's IN
        # subqueries then get nested-loop plans that take seconds per chunk: refresh them.
        with site.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE subscribers, subscriptions, subscriber_tags")


def preview_for(
    site: Site, rendered: Rendered, address: str | None, now: datetime
) -> tuple[str, dict[str, str]]:
    """The variant and merge fields of ADDRESS's message (`newsroom preview --as`), with the
    links their message would carry; for nobody in particular (None), the variant without any
    `only` block and links that lead nowhere."""
    if address is None:
        base = site.config.text("site.base_url").rstrip("/")
        fields = {
            "unsubscribe_url": f"{base}/unsubscribe/PREVIEW",
            "preferences_url": f"{base}/preferences/PREVIEW",
        }
        return rendered.variant_for(lambda _: False), fields
    with transaction(site.engine) as session:
        found = subscribers.profile(session, address)
    person = found.subscriber
    named = tokens.for_subscriber(person.id, person.email, person.token_key)
    fields = personalise.values(
        person.email, person.name, *tokens.links(site.config, named, now=now)
    )
    saved = savedsegments.expressions(savedsegments.read(site.segments_file))
    key = rendered.variant_for(
        lambda only: segments.matches(segments.parse(only, saved), found.lists, found.tags)
    )
    return key, fields


def send_test(site: Site, planned: Plan, address: str, expression: str, now: datetime) -> str:
    """One copy of the issue to ADDRESS with `[TEST]` before the subject; returns the answer."""
    config = site.config
    key = planned.choose(lambda _only: True)  # the fullest variant: every `only` block shown
    content = planned.variants[key]
    content = Content(f"[TEST] {content.subject}", content.html, content.text)
    target = expression or planned.default_to
    template = templates(config, target, {key: content}, planned.letterhead)[key]
    person = tokens.for_subscriber(0, address, "")  # names no subscriber: the links do nothing
    recipient = Recipient(address, "", *tokens.links(config, person, now=now))
    data = template.build(
        recipient, new_message_id(template.message_id_domain), DateHeader().date()
    )
    sender = verp.sender_for_test_copy(config)  # ours, naming no delivery: its bounces do nothing
    outcomes: list[Any] = []

    async def go() -> None:
        pool = Pool(config, connections=1, limiter=RateLimiter(1000.0))
        try:
            await pool.check()
            message = Outgoing(0, sender, wire_address(address), data)
            await pool.send_all(iter([message]), outcomes.append)
        finally:
            await pool.close()

    asyncrun.run(go())
    if outcomes[0].kind == UNSENDABLE:
        raise NewsroomError(f"the test copy to {address} was not sent: {outcomes[0].answer}")
    if outcomes[0].kind != SENT:
        raise NewsroomError(f"the relay did not take the test copy: {outcomes[0].answer}")
    return str(outcomes[0].answer)


@dataclass
class Checked:
    """One issue checked: its errors or its warnings, its --json entry, its "ok" line."""

    errors: list[Problem]
    warnings: list[Problem]
    report: dict[str, Any]
    ok: str = ""


def check_issue(
    site: Site,
    path: Path,
    wrong: list[Problem],
    known: set[str] | None,
    saved: Collection[str] | None = None,
) -> Checked:
    """`newsroom check` for one issue; WRONG are its errors found already (a shared slug), KNOWN the site's
    lists (None when lists.toml itself is wrong), SAVED its saved segments (None when
    segments.toml is wrong)."""
    shown = issues.shown_path(path, site.config)
    try:
        issue = issues.load_issue(path, site.config)
    except ProblemsError as exc:
        wrong = [*exc.problems, *wrong]
    else:
        if known is not None:
            wrong = [*issue_preflight.unknown_lists(issue, shown, known), *wrong]
        if saved is not None:
            wrong = [*issue_preflight.unknown_segments(issue, shown, saved), *wrong]
    if wrong:
        return Checked(wrong, [], {"path": str(path), "errors": [str(p) for p in wrong]})
    try:
        rendered = rendering.render(issue, site.config)
    except ProblemsError as exc:  # a mistake in one of the site's templates/
        return Checked(
            exc.problems, [], {"path": str(path), "errors": [str(p) for p in exc.problems]}
        )
    found = issue_preflight.warnings(issue, rendered, shown)
    named = {r.name for *_, r in issue_preflight.named(issue) if isinstance(r, segments.TagRef)}
    tags = _tags_in_use(site, named)
    found += issue_preflight.unknown_tags(issue, shown, tags) if tags is not None else []
    size = max(len(v.html.encode()) for k, v in rendered.variants.items() if k != "public")
    report = {"path": str(path), "errors": [], "warnings": [str(w) for w in found],
              "variants": list(rendered.variants), "html_bytes": size}  # fmt: skip
    ok = f"{shown}: ok — {len(rendered.variants)} variants, email {size / 1024:.0f} KB"
    return Checked([], found, report, ok)


def _tags_in_use(site: Site, names: set[str]) -> set[str] | None:
    """Those of NAMES some subscriber has; None when the database is not set up or cannot be
    reached, for `check` works on issues alone and then says nothing about tags."""
    if not names:
        return set()
    url = make_url(site.config.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return None  # connecting would leave an empty newsroom.db behind
    try:
        if database.setup_problem(site.engine) is not None:
            return None
        with transaction(site.engine) as session:
            return selection.tags_in_use(session, names)
    except SQLAlchemyError:
        return None
