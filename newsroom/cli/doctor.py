"""`newsroom doctor`: is this site ready to send? A thin shell over doctor.py and dnsrecords.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from newsroom.cli.common import State, echo_json, json_option, pass_state
from newsroom.delivery import dnsrecords
from newsroom.delivery import doctor as checks

if TYPE_CHECKING:
    from newsroom.people.lists import ListSpec

STATUS_WIDTH = 9  # "problem" and "warning", and a space or two


@click.command()
@click.option(
    "--dns", "look_up", is_flag=True, help="Look the DNS records up and compare them too."
)
@click.option(
    "--nameserver",
    metavar="HOST[:PORT]",
    help="Ask this name server (such as your DNS provider's) instead of this machine's; "
    "implies --dns.",
)
@json_option
@pass_state
@click.pass_context
def doctor(
    ctx: click.Context, state: State, look_up: bool, nameserver: str | None, as_json: bool
) -> None:
    """Check whether the site is ready to send, each check with what to do.

    Settings, secret key, relay (connects, STARTTLS, login; sends nothing) and DKIM key, then the
    DNS records to publish (SPF, DKIM, DMARC) as zone-file lines. Exit status 1 when a problem
    blocks a real mailing; warnings are advice and do not change it.

    \b
    Example:
      newsroom doctor --dns --nameserver ns1.your-dns-provider.net
    """
    server = dnsrecords.parse_nameserver(nameserver) if nameserver is not None else None
    config = state.site.config
    found = checks.site_checks(config) + _list_checks(state)
    records = dnsrecords.records(config)
    if look_up or server:
        found += dnsrecords.dns_checks(records, server)
    if as_json:
        echo_json(
            {
                "ready": checks.ready(found),
                "checks": [check.__dict__ for check in found],
                "records": [{**r.__dict__, "zone": r.zone} for r in records],
            }
        )
    else:
        _print(found, records)
    if not checks.ready(found):
        ctx.exit(1)


def _list_checks(state: State) -> list[checks.Check]:
    """The lists that send as themselves; lists.toml's own errors as one problem."""
    from newsroom.delivery import readiness
    from newsroom.errors import ProblemsError
    from newsroom.people import lists

    try:
        specs = lists.read_lists(state.site.lists_file)
    except ProblemsError as exc:
        return [checks.Check("lists", checks.PROBLEM, str(exc), "fix subscribers/lists.toml")]
    senders = [readiness.ListSender(s.slug, s.sender, s.line) for s in specs.values() if s.sender]
    found = checks.list_sender_checks(config=state.site.config, senders=senders)
    return found + _welcome_checks(state, specs)


def _welcome_checks(state: State, specs: dict[str, ListSpec]) -> list[checks.Check]:
    """Each list's welcome issue: a warning when it cannot be sent (it stops no mailing and no
    confirmation; its welcomes wait), with its first problem."""
    from newsroom.delivery import welcomes

    found = []
    for slug, wrong in welcomes.problems(state.site, specs).items():
        name, path = f"welcome {slug}", specs[slug].welcome
        if wrong:
            words = f"{path} cannot be sent, its welcomes wait: {wrong[0]}"
            found.append(checks.Check(name, checks.WARNING, words, "see `newsroom check`"))
        else:
            found.append(checks.Check(name, checks.OK, f"welcomes with {path}"))
    return found


def _print(found: list[checks.Check], records: list[dnsrecords.Record]) -> None:
    dns = [c for c in found if c.name.startswith("DNS")]
    for check in found[: len(found) - len(dns)]:  # the DNS look-ups come last
        _line(check)
    if records:
        # zone-file lines start in the first column: an indented line would mean "the owner
        # name of the line before" to a DNS server (RFC 1035 §5.1)
        click.echo("\nDNS records to publish (zone-file lines, for your DNS provider):")
        for record in records:
            click.echo(record.zone)
    if dns:
        click.echo()
    for check in dns:
        _line(check)
    problems = sum(c.status == checks.PROBLEM for c in found)
    warnings = sum(c.status == checks.WARNING for c in found)
    advice = f"{warnings} warning{'s' * (warnings != 1)}"
    if problems:
        click.echo(
            f"\nNot ready: {problems} problem{'s' * (problems != 1)} to fix before a real "
            f"mailing ({advice})."
        )
    else:
        click.echo(f"\nReady to send ({advice}).")


def _line(check: checks.Check) -> None:
    click.echo(f"{check.status:{STATUS_WIDTH}}{check.name}: {check.detail}")
    if check.fix:
        click.echo(f"{'':{STATUS_WIDTH}}what to do: {check.fix}")
