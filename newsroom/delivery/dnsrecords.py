"""The DNS records that let receivers trust a site's mail: SPF (RFC 7208), the DKIM key
(RFC 6376) and DMARC (RFC 7489), made from the settings and the key, written as zone-file lines,
and — for `newsroom doctor --dns` — looked up (dnspython, loaded only then) and compared.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from cryptography.hazmat.primitives import serialization

from newsroom.delivery import readiness, sending
from newsroom.delivery.doctor import OK, WARNING, Check, address_domain, is_loopback, shown
from newsroom.errors import NewsroomError
from newsroom.mail.dkim import Signer
from newsroom.settings import Config

LOOKUP_SECONDS = 5.0  # per DNS record: a name server that has not answered by then will not


@dataclass(frozen=True)
class Record:
    """A TXT record to publish: what for (SPF, DKIM, DMARC), its owner name, its value."""

    kind: str
    name: str  # without the final dot
    value: str

    @property
    def zone(self) -> str:
        """The record as one zone-file line (RFC 1035 §5.1): a fully qualified name, and the
        value in strings of at most 255 bytes each (§3.3.14), joined again by the reader
        (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
        data = self.value.encode()
        strings = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        try:  # a zone file names an internationalised domain by its A-labels (RFC 5890)
            owner = self.name.encode("idna").decode("ascii")
        except UnicodeError:
            owner = self.name
        return f"{owner}. IN TXT " + " ".join(_zone_string(s) for s in strings)


def _zone_string(data: bytes) -> str:
    """DATA as a quoted zone-file string: quotes and backslashes escaped, bytes outside
    printable ASCII as \\DDD (RFC 1035 §5.1)."""
    out = []
    for byte in data:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def records(config: Config) -> list[Record]:
    """The SPF, DKIM and DMARC records that let receivers trust this site's mail: as many as
    the settings allow (no DKIM record without a usable key)."""
    found = []
    bounce_domain = address_domain(config.text("sending.bounce_address"))
    if bounce_domain:  # SPF is checked against the envelope sender's domain (RFC 7208 §2.4)
        mechanism = _spf_mechanism(config.text("smtp.host"))
        found.append(Record("SPF", bounce_domain, f"v=spf1 {mechanism} ~all"))
    signer = _usable_signer(config)
    if signer is not None:
        found.append(
            Record("DKIM", f"{signer.selector}._domainkey.{signer.domain}", dkim_value(signer))
        )
    sender = parseaddr(config.text("site.sender"))[1]
    from_domain = address_domain(sender)
    if from_domain:  # p=none: reports only, nothing refused while the rest is checked
        found.append(
            Record("DMARC", f"_dmarc.{from_domain}", f"v=DMARC1; p=none; rua=mailto:{sender}")
        )
    return found


def _spf_mechanism(host: str) -> str:
    """Who may send for the envelope domain: the relay, named as the settings name it. A relay
    on this machine (or a placeholder) gives `mx`, the likeliest guess; a provider that
    documents an `include:` knows better."""
    name = host.strip().strip("[]").lower().rstrip(".")
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        if is_loopback(name) or readiness.placeholder_domain(name):
            return "mx"
        return f"a:{name}"
    return "mx" if address.is_loopback else f"ip{address.version}:{address}"


def _usable_signer(config: Config) -> Signer | None:
    try:
        return sending.signer(config)
    except NewsroomError:
        return None  # dkim_checks says why


def dkim_value(signer: Signer) -> str:
    """The DKIM key record of SIGNER's key (RFC 6376 §3.6.1): its public half, DER, base64."""
    public = signer.key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def parse_nameserver(text: str) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address → (host, port)."""
    host, port = text.strip(), "53"
    if host.startswith("[") and "]:" in host:
        host, port = host[1:].split("]:", 1)
    host = host.removeprefix("[").removesuffix("]")
    if ":" in host and not _ipv6(host):
        host, _, port = host.rpartition(":")
    if (
        not host
        or (":" in host and not _ipv6(host))
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise NewsroomError(
            f"--nameserver {text!r}: write HOST or HOST:PORT, such as ns1.your-dns-provider.net "
            "or 127.0.0.1:5353"
        )
    return host, int(port)


def _ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def dns_checks(
    wanted: list[Record],
    nameserver: tuple[str, int] | None = None,
    lifetime: float = LOOKUP_SECONDS,
) -> list[Check]:
    """Look each record up (at NAMESERVER, or this machine's name server) and compare. Without
    an answer within LIFETIME seconds, one warning says the records were not checked."""
    import dns.exception  # dnspython: loaded only for `newsroom doctor --dns`

    where = (
        f"the name server {nameserver[0]}:{nameserver[1]}"
        if nameserver
        else "this machine's name server"
    )
    checks = []
    try:
        resolver = _resolver(nameserver, lifetime)
        for record in wanted:
            checks.append(compare(record, _txt(resolver, record.name)))
    except (dns.exception.DNSException, OSError) as exc:
        checks.append(
            Check(
                "DNS",
                WARNING,
                f"records not checked: {_unanswered(where, exc, lifetime)}",
                "run `newsroom doctor --dns` where there is network, or ask your DNS "
                "provider's server with --nameserver HOST",
            )
        )
    return checks


def _resolver(nameserver: tuple[str, int] | None, lifetime: float) -> Any:
    import dns.resolver

    if nameserver is None:
        resolver = dns.resolver.Resolver()  # /etc/resolv.conf
    else:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = nameserver
        resolver.nameservers = [
            str(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0])
        ]
        resolver.port = port
    # EDNS (RFC 6891) with the 1232-byte payload of DNS Flag Day 2020: a 2048-bit DKIM key's
    # answer comes close to plain DNS's 512 bytes
    resolver.use_edns(0, 0, 1232)
    resolver.lifetime = lifetime
    return resolver


def _txt(resolver: Any, name: str) -> list[str]:
    """The TXT records at NAME, each one's strings joined; none when the name has none."""
    import dns.resolver

    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def _unanswered(where: str, exc: BaseException, lifetime: float) -> str:
    import dns.exception
    import dns.resolver

    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return "this machine has no name server configured (no network?)"
    if isinstance(exc, dns.exception.Timeout):
        return f"no answer from {where} within {lifetime:g} seconds (no network?)"
    if isinstance(exc, dns.resolver.NoNameservers):
        return f"{where} refused or failed the query (no network?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot find {where}: {shown(exc.strerror or exc)}"
    return shown(exc)


def compare(record: Record, published: list[str]) -> Check:
    """How the TXT records PUBLISHED at the record's name compare with RECORD."""
    name = f"DNS {record.kind}"
    found = [text for text in published if _is_kind(record.kind, text)]
    publish = f"publish the {record.kind} record the doctor prints"
    if not found:
        return Check(name, WARNING, f"no {record.kind} record at {record.name}", publish)
    if len(found) > 1 and record.kind != "DKIM":
        rfc = "RFC 7208 §4.5" if record.kind == "SPF" else "RFC 7489 §6.6.3"
        return Check(
            name,
            WARNING,
            f"{len(found)} {record.kind} records at {record.name}: receivers then use none ({rfc})",
            f"keep only one: {publish}",
        )
    if record.kind == "DMARC" or any(_same(record, text) for text in found):
        return Check(name, OK, f"published at {record.name}: {shown(found[0])}")
    why = {
        "SPF": "make sure it names your relay, or publish the SPF record the doctor prints",
        "DKIM": "publish this key's DKIM record: signatures made with dkim.key_file fail "
        "against another key",
    }[record.kind]
    return Check(
        name,
        WARNING,
        f"the {record.kind} record at {record.name} is {shown(found[0])!r}, not the one to publish",
        why,
    )


def _is_kind(kind: str, text: str) -> bool:
    if kind == "SPF":  # RFC 7208 §4.5: "v=spf1" alone or followed by a space
        return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")
    if kind == "DMARC":  # RFC 7489 §6.4: v=DMARC1 comes first
        return text.replace(" ", "").startswith("v=DMARC1")
    return "p" in _tags(text)  # a DKIM key record: v= is optional (RFC 6376 §3.6.1)


def _same(record: Record, text: str) -> bool:
    if record.kind == "DKIM":
        return _tags(text)["p"] == _tags(record.value)["p"]
    return " ".join(text.lower().split()) == " ".join(record.value.lower().split())


def _tags(text: str) -> dict[str, str]:
    """A tag=value list (RFC 6376 §3.2), whitespace removed from values (base64 may be split)."""
    tags = {}
    for part in text.split(";"):
        key, equals, value = part.partition("=")
        if equals and key.strip():
            tags[key.strip()] = "".join(value.split())
    return tags
