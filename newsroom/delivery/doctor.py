"""`newsroom doctor`: whether a site is ready to send, as checks a volunteer can act on.

Each check is one line: a name, ok / problem / warning, what was found, and what to do.

- A **problem** blocks a real mailing, and `newsroom doctor` exits 1: placeholder settings (the
  rules are readiness.py's), no secret key or a guessable one, a relay that cannot be reached,
  STARTTLS not offered or a TLS certificate that is not valid, a login refused, mail and password
  crossing the network in clear, a DKIM key that cannot be read or used, that every user of the
  machine can read, that git tracks, or that is under 1024 bits.
- A **warning** is advice that sending works without: no DKIM at all, a 1024-bit key (2048
  advised), a DKIM domain not aligned with From for DMARC, DNS records missing or different, a
  relay that is `newsroom dev-smtp`.

The relay check connects, greets, upgrades to TLS and logs in exactly as sending does
(smtp.smtp_client), and never sends MAIL FROM. The DNS records to publish, and their look-up,
are dnsrecords.py's.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

import aiosmtplib

from newsroom.delivery import readiness, sending
from newsroom.delivery.readiness import aligned, is_loopback
from newsroom.errors import ConfigError, NewsroomError
from newsroom.mail import asyncrun, smtp
from newsroom.mail.dkim import Signer
from newsroom.mail.messages import domain_of
from newsroom.settings import Config

OK, PROBLEM, WARNING = "ok", "problem", "warning"
# token_urlsafe(32), what `newsroom init` writes, is 43 characters (256 bits); 32 of them still
# carry 192 bits. A shorter key is likely typed by a person, and can be guessed.
MIN_SECRET_CHARS = 32
NEW_KEY = "openssl genrsa -out dkim.pem 2048 && chmod 600 dkim.pem"
NEW_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # ok, problem (blocks a real mailing) or warning (advice)
    detail: str
    fix: str = ""  # what to do; empty when there is nothing to do


def ready(checks: list[Check]) -> bool:
    """True when no check found a problem (warnings are advice)."""
    return not any(c.status == PROBLEM for c in checks)


def shown(text: object, limit: int = 200) -> str:
    """TEXT from outside (a relay's answer, a DNS record) made safe to print: control
    characters (a terminal's escape sequences) as '?', at most LIMIT characters."""
    clean = "".join(c if c.isprintable() else "?" for c in str(text))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def address_domain(address: str) -> str:
    """The domain of the address in ADDRESS (`Name <a@b.org>` or a bare one); empty if none."""
    found = parseaddr(address)[1]
    return domain_of(found).rstrip(".") if "@" in found else ""


# --- settings and the secret key --------------------------------------------------------------


def settings_checks(config: Config) -> list[Check]:
    """One problem per placeholder setting (readiness.py holds the rules)."""
    found = readiness.problems(config)
    if not found:
        return [
            Check(
                "settings",
                OK,
                "no placeholder settings (site.base_url, site.sender, sending.bounce_address)",
            )
        ]
    return [
        Check("settings", PROBLEM, f"{u.setting} is {u.value!r}: {u.problem}", u.fix) for u in found
    ]


def secret_key_checks(config: Config) -> list[Check]:
    """The key every token is signed with: set, and long enough not to be guessed. The key
    itself is never shown."""
    key = config.text("secret.key")
    if not key:
        fix = "set NEWSROOM_SECRET_KEY in .env or the environment"
        try:
            _ = config.secret_key
        except ConfigError as exc:  # its words say how to set one
            fix = str(exc).removeprefix("no secret key: ")
        return [
            Check(
                "secret key",
                PROBLEM,
                "NEWSROOM_SECRET_KEY is not set: the links in emails cannot be signed",
                fix,
            )
        ]
    source = config.sources["secret.key"]
    if len(key) < MIN_SECRET_CHARS:
        return [
            Check(
                "secret key",
                PROBLEM,
                f"NEWSROOM_SECRET_KEY (from {source}) is only {len(key)} characters: a short key "
                "can be guessed, and with it every unsubscribe and preference link forged",
                f"replace it with a new one made by {NEW_SECRET} (links in emails already sent "
                "then stop working, as they should if the old key may be known)",
            )
        ]
    return [Check("secret key", OK, f"set ({len(key)} characters, from {source})")]


# --- the relay --------------------------------------------------------------------------------


def relay_checks(config: Config) -> list[Check]:
    """Connect to the relay, greet it, upgrade to TLS and log in as sending would; send
    nothing. One line per step that was reached."""
    return asyncrun.run(_relay(config))


async def _relay(config: Config) -> list[Check]:
    if config.text("smtp.security") == "none" and not is_loopback(config.text("smtp.host")):
        return [_in_clear(config)]  # not even a connection: the settings must change first
    client = smtp.smtp_client(config)
    checks: list[Check] = []
    step = "relay"
    try:
        greeting = await client.connect(start_tls=False)  # TLS first, when smtp.security = tls
        await client.ehlo()
        checks.append(_reached(config, greeting.message))
        step = "relay TLS"
        checks.append(await _tls(client, config))
        if checks[-1].status != PROBLEM:  # no password over a connection that is not safe
            step = "relay login"
            checks.append(await _login(client, config))
    except (aiosmtplib.SMTPException, OSError) as exc:
        checks.append(_failed(step, config, exc))
    finally:
        await smtp.disconnect(client)
    return checks


def _in_clear(config: Config) -> Check:
    # RFC 8314, "Cleartext Considered Obsolete": submission across a network goes through TLS
    return Check(
        "relay TLS",
        PROBLEM,
        f"smtp.security is none and {config.text('smtp.host')} is not this machine: mail and "
        "the password would cross the network in clear (the doctor did not connect)",
        'set smtp.security = "starttls" (usually with smtp.port = 587) or "tls" (usually '
        "465), as your provider documents",
    )


def _reached(config: Config, greeting: str) -> Check:
    name = smtp.relay_name(config)
    if readiness.is_dev_smtp(config, greeting):
        return Check(
            "relay",
            WARNING,
            f"{name} is `newsroom dev-smtp`: it keeps every message in a Maildir and delivers none",
            "set smtp.host and smtp.port to your provider's relay",
        )
    host = greeting.split(" ", 1)[0]
    return Check("relay", OK, f"{name} answers, as {shown(host, 64)}")


async def _tls(client: aiosmtplib.SMTP, config: Config) -> Check:
    security, host = config.text("smtp.security"), config.text("smtp.host")
    if security == "none":
        return Check(
            "relay TLS",
            OK,
            "none: the relay is on this machine (loopback), so nothing crosses the network",
        )
    if security == "starttls":
        if not client.supports_extension("starttls"):
            return Check(
                "relay TLS",
                PROBLEM,
                f"{smtp.relay_name(config)} does not offer STARTTLS (RFC 3207)",
                "set smtp.port to the port where your provider offers it (usually 587), or "
                'use smtp.security = "tls" (usually port 465)',
            )
        await client.starttls()
        await client.ehlo()  # RFC 3207 §4.2: forget what was offered before TLS, ask again
    tls = client.get_transport_info("ssl_object")
    version = tls.version() if isinstance(tls, ssl.SSLObject | ssl.SSLSocket) else "TLS"
    how = "STARTTLS" if security == "starttls" else "TLS from the start"
    return Check("relay TLS", OK, f"{how}, certificate valid for {host} ({version})")


async def _login(client: aiosmtplib.SMTP, config: Config) -> Check:
    user, name = config.text("smtp.username"), smtp.relay_name(config)
    offered = client.supports_extension("auth")
    if not user:
        if offered:
            return Check(
                "relay login",
                WARNING,
                f"smtp.username is empty, but {name} offers AUTH: it may refuse to pass mail "
                "on without a login",
                "set smtp.username, and NEWSROOM_SMTP_PASSWORD, as your provider gives them",
            )
        return Check("relay login", OK, "none: smtp.username is empty and the relay offers no AUTH")
    if not offered:
        return Check(
            "relay login",
            PROBLEM,
            f"{name} offers no AUTH (RFC 4954), so smtp.username {user!r} cannot log in",
            "check smtp.port and smtp.security: relays offer AUTH on their submission port, "
            "most only after TLS",
        )
    await client.login(user, config.text("smtp.password"))
    return Check("relay login", OK, f"logged in as {user!r}")


def _failed(step: str, config: Config, exc: BaseException) -> Check:
    name = smtp.relay_name(config)
    tls = next((e for e in _chain(exc) if isinstance(e, ssl.SSLError)), None)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return Check(
            "relay TLS",
            PROBLEM,
            f"the TLS certificate of {name} is not valid: {shown(tls.verify_message)}",
            "set smtp.host to the name on the relay's certificate (the host name your provider "
            "documents); a self-signed or expired certificate must be replaced by whoever runs "
            "the relay",
        )
    if tls is not None:
        return Check(
            "relay TLS",
            PROBLEM,
            f"TLS with {name} failed: {shown(tls.reason or tls)}",
            'check smtp.security against smtp.port: "tls" for a port that speaks TLS from the '
            'start (usually 465), "starttls" for one that upgrades (usually 587)',
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        unset = "" if config.text("smtp.password") else " (it is not set)"
        return Check(
            "relay login",
            PROBLEM,
            f"{name} refused the login of smtp.username {config.text('smtp.username')!r}: "
            f"{exc.code} {shown(exc.message)}",
            f"check smtp.username and NEWSROOM_SMTP_PASSWORD{unset}",
        )
    if step == "relay":
        return Check(
            "relay",
            PROBLEM,
            f"cannot reach the SMTP relay {name}: {_reason(config, exc)}",
            "check smtp.host and smtp.port: your provider's submission server, usually port "
            '587 with smtp.security = "starttls" or 465 with "tls"',
        )
    return Check(
        step,
        PROBLEM,
        f"the SMTP relay {name} failed: {_reason(config, exc)}",
        "run the doctor again; if it goes on failing, ask your provider",
    )


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while exc is not None and seen < 10:  # a cycle of causes is possible: stop somewhere
        yield exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


def _reason(config: Config, exc: BaseException) -> str:
    """Why the relay could not be reached, in words: the system's for a socket error."""
    for cause in _chain(exc):
        if isinstance(cause, aiosmtplib.SMTPTimeoutError | TimeoutError):
            return f"no answer within {config.number('smtp.timeout'):g} seconds (smtp.timeout)"
        if isinstance(cause, socket.gaierror):
            return shown(cause.strerror or cause)
        if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
            return os.strerror(cause.errno)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {shown(exc.message)}"
    return shown(exc)


# --- DKIM -------------------------------------------------------------------------------------


def dkim_checks(config: Config) -> list[Check]:
    """The signing key: readable and usable, private to its owner, outside git, big enough;
    and its domain aligned with From for DMARC."""
    if not config.text("dkim.domain"):
        return [
            Check(
                "DKIM key",
                WARNING,
                "none (dkim.domain is empty): messages go out unsigned, and many providers "
                "junk unsigned bulk mail",
                f"make a key ({NEW_KEY}), set dkim.domain (your From domain), dkim.selector (a "
                'name such as news1) and dkim.key_file = "dkim.pem", keep it out of git, and '
                "publish the DKIM record the doctor then prints",
            )
        ]
    try:
        signer = sending.signer(config)
    except NewsroomError as exc:
        return [
            Check(
                "DKIM key",
                PROBLEM,
                str(exc),
                "dkim.key_file must name an unencrypted PEM RSA private key, relative to the "
                f"site folder (make one with {NEW_KEY})",
            )
        ]
    assert signer is not None
    path, shown_path = config.path("dkim.key_file"), config.text("dkim.key_file")
    found = [
        check
        for check in (
            _key_mode(path, shown_path),
            _key_in_git(path, shown_path, signer.domain),
            _key_size(signer, shown_path),
        )
        if check is not None
    ]
    if not found:
        found = [
            Check(
                "DKIM key",
                OK,
                f"{shown_path}: a {signer.key.key_size}-bit RSA key, readable only by its owner "
                f"and not tracked by git, for {signer.selector}._domainkey.{signer.domain}",
            )
        ]
    return found + _alignment(config)


def _key_mode(path: Path, shown_path: str) -> Check | None:
    mode = path.stat().st_mode
    if not mode & stat.S_IROTH:
        return None
    return Check(
        "DKIM key",
        PROBLEM,
        f"{shown_path} is readable by every user of this machine (mode {mode & 0o777:04o}): "
        "anyone who reads it can sign mail as you",
        f"chmod 600 {path}",
    )


def _key_in_git(path: Path, shown_path: str, domain: str) -> Check | None:
    if not _tracked_by_git(path):
        return None
    return Check(
        "DKIM key",
        PROBLEM,
        f"{shown_path} is tracked by git: everyone with a copy of the repository can sign "
        f"mail as {domain}",
        f"git rm --cached {path} and add it to .gitignore; the key stays in the history, so "
        "make a new one and publish it under a new dkim.selector",
    )


def _tracked_by_git(path: Path) -> bool:
    """Whether a git repository holding PATH tracks it (a machine without git tracks nothing)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(path.parent), "ls-files", "--error-unmatch", "--", path.name],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0  # 1: not tracked; 128: not in a repository


def _key_size(signer: Signer, shown_path: str) -> Check | None:
    bits = signer.key.key_size
    rotate = f"make a 2048-bit key ({NEW_KEY}) and publish it under a new dkim.selector"
    if bits < 1024:
        return Check(
            "DKIM key",
            PROBLEM,
            f"{shown_path} is a {bits}-bit RSA key: receivers ignore signatures made with keys "
            "under 1024 bits (RFC 8301 §3.2)",
            rotate,
        )
    if bits < 2048:
        return Check(
            "DKIM key",
            WARNING,
            f"{shown_path} is a {bits}-bit RSA key: 2048 bits are advised (RFC 8301 §3.2)",
            rotate + " before switching to it",
        )
    return None


def _alignment(config: Config) -> list[Check]:
    dkim_domain, from_domain = (
        config.text("dkim.domain"),
        address_domain(config.text("site.sender")),
    )
    if not from_domain:
        return []  # the settings check says site.sender has no address
    if aligned(dkim_domain, from_domain):
        return [
            Check(
                "DMARC alignment",
                OK,
                f"dkim.domain {dkim_domain} is aligned with the From domain {from_domain}",
            )
        ]
    return [
        Check(
            "DMARC alignment",
            WARNING,
            f"dkim.domain {dkim_domain} is neither the From domain {from_domain} nor a parent "
            "or subdomain of it: DMARC does not count the signature (RFC 7489 §3.1.1)",
            f'set dkim.domain = "{from_domain}" and publish the key there',
        )
    ]


def list_sender_checks(config: Config, senders: list[readiness.ListSender]) -> list[Check]:
    """The lists that send as themselves (issue #16, item 4), each held to site.sender's rules:
    a placeholder domain is a problem (their mailings are refused), a domain DMARC does not
    align with dkim.domain a warning."""
    found = []
    dkim_domain = config.text("dkim.domain")
    for entry in senders:
        name = f"list {entry.slug}"
        domain = address_domain(entry.sender)
        problem = readiness.placeholder_domain(domain)
        if problem:
            found.append(
                Check(
                    name,
                    PROBLEM,
                    f"sender {entry.sender!r}: its domain is {problem}",
                    "set sender in subscribers/lists.toml to an address at your own domain",
                )
            )
        elif dkim_domain and not aligned(dkim_domain, domain):
            found.append(
                Check(
                    name,
                    WARNING,
                    f"sender {entry.sender!r} is not at dkim.domain {dkim_domain} (nor a parent "
                    "or subdomain of it): DMARC does not count the signature (RFC 7489 §3.1.1)",
                    f"send from an address at {dkim_domain}, or sign for {domain}",
                )
            )
        else:
            found.append(Check(name, OK, f"sends as {entry.sender}"))
    return found


def site_checks(config: Config) -> list[Check]:
    """Every check but the DNS look-ups, in the order a volunteer works through them."""
    return (
        settings_checks(config)
        + secret_key_checks(config)
        + relay_checks(config)
        + dkim_checks(config)
    )
