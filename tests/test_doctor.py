"""`newsroom doctor` (doctor.py, dnsrecords.py): every check's words, against a real relay (aiosmtpd, STARTTLS, AUTH), real
keys made by openssl, a real git repository and a real DNS server on loopback."""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsroom import settings
from newsroom.delivery import dnsrecords, doctor
from newsroom.delivery.dnsrecords import Record
from newsroom.delivery.doctor import PROBLEM, WARNING, Check
from newsroom.errors import NewsroomError
from newsroom.mail.devsmtp import DEV_SMTP_NAME
from tests.conftest import Run
from tests.dnsserver import TestDNSServer, closed_udp_port
from tests.smtpserver import TestSMTPServer, free_port

REAL = {
    "NEWSROOM_SITE_BASE_URL": "https://news.labourleft.org",
    "NEWSROOM_SITE_SENDER": "Labour Left <news@labourleft.org>",
    "NEWSROOM_SENDING_BOUNCE_ADDRESS": "bounces@labourleft.org",
    "NEWSROOM_SMTP_USERNAME": "news",
    "NEWSROOM_SMTP_PASSWORD": "s3cret",
    "NEWSROOM_DKIM_DOMAIN": "labourleft.org",
    "NEWSROOM_DKIM_SELECTOR": "news1",
    "NEWSROOM_DKIM_KEY_FILE": "dkim.pem",
}
SETTINGS_OK = (
    "ok       settings: no placeholder settings (site.base_url, site.sender, "
    "sending.bounce_address)"
)
SECRET_OK = "ok       secret key: set (34 characters, from environment)"
ALIGNED = "ok       DMARC alignment: dkim.domain labourleft.org is aligned with the From domain labourleft.org"
ROTATE = (
    "make a 2048-bit key (openssl genrsa -out dkim.pem 2048 && chmod 600 dkim.pem) and publish "
    "it under a new dkim.selector"
)


@pytest.fixture(scope="session")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """RSA private keys of 512, 1024 and 2048 bits, made by openssl."""
    folder = tmp_path_factory.mktemp("keys")
    keys = {}
    for bits in (512, 1024, 2048):
        keys[bits] = folder / f"rsa{bits}.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(keys[bits]), str(bits)],
            check=True,
            capture_output=True,
        )
    return keys


def public_record(key: Path) -> str:
    """The DKIM record of KEY made by openssl, not by newsroom."""
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    import base64

    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def install_key(site_dir: Path, key: Path, mode: int = 0o600) -> Path:
    target = site_dir / "dkim.pem"
    shutil.copyfile(key, target)
    target.chmod(mode)
    return target


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch, site_dir: Path, rsa_keys: dict[int, Path]) -> Path:
    """A site with real settings and a 2048-bit DKIM key (mode 0600, not in git)."""
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    return install_key(site_dir, rsa_keys[2048])


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestSMTPServer]:
    """A relay on loopback that takes the login news / s3cret (no TLS: nothing leaves)."""
    server = TestSMTPServer(accounts={"news": "s3cret"}).start()
    monkeypatch.setenv("NEWSROOM_SMTP_HOST", server.host)
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(server.port))
    yield server
    server.stop()


@pytest.fixture
def relay_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """The relay's side of TLS, with the self-signed certificate for localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def tls_relay(
    relay_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestSMTPServer]:
    """A relay offering STARTTLS with a self-signed certificate for localhost, and AUTH."""
    server = TestSMTPServer(tls_context=relay_context, accounts={"news": "s3cret"}).start()
    monkeypatch.setenv("NEWSROOM_SMTP_HOST", "localhost")
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(server.port))
    monkeypatch.setenv("NEWSROOM_SMTP_SECURITY", "starttls")
    yield server
    server.stop()


def lines(output: str) -> list[str]:
    return output.splitlines()


# --- the whole report -------------------------------------------------------------------------


def test_a_new_site_is_not_ready(cli: Run, smtp_server: TestSMTPServer) -> None:
    result = cli("doctor")
    assert result.exit_code == 1
    relay = f"127.0.0.1:{smtp_server.port}"
    assert lines(result.stdout) == [
        "problem  settings: site.base_url is 'http://localhost:8000': a name reserved for tests "
        "and examples (RFC 2606, RFC 6761)",
        "         what to do: set it to the https:// address of your public web side, such as "
        "https://news.your-organisation.org (unsubscribe and preference links, and List-Id, are "
        "made from it)",
        "problem  settings: site.sender is 'Newsroom <newsroom@example.org>': its domain is an "
        "example domain, not yours",
        "         what to do: set it to an address at your own domain (the From: address and the "
        'Message-ID domain), such as "Our Campaign <news@your-organisation.org>"',
        "problem  settings: sending.bounce_address is 'bounces@example.org': its domain is an "
        "example domain, not yours",
        "         what to do: set it to an address at your own domain (the envelope sender that "
        "bounce reports come back to), such as bounces@your-organisation.org (its mailbox must "
        "also take bounces+anything@ — plus-addressing — see Going live)",
        SECRET_OK,
        f"ok       relay: {relay} answers, as test-smtp.localhost",
        "ok       relay TLS: none: the relay is on this machine (loopback), so nothing crosses "
        "the network",
        "ok       relay login: none: smtp.username is empty and the relay offers no AUTH",
        "warning  DKIM key: none (dkim.domain is empty): messages go out unsigned, and many "
        "providers junk unsigned bulk mail",
        "         what to do: make a key (openssl genrsa -out dkim.pem 2048 && chmod 600 "
        "dkim.pem), set dkim.domain (your From domain), dkim.selector (a name such as news1) and "
        'dkim.key_file = "dkim.pem", keep it out of git, and publish the DKIM record the doctor '
        "then prints",
        "",
        "DNS records to publish (zone-file lines, for your DNS provider):",
        'example.org. IN TXT "v=spf1 mx ~all"',
        '_dmarc.example.org. IN TXT "v=DMARC1; p=none; rua=mailto:newsroom@example.org"',
        "",
        "Not ready: 3 problems to fix before a real mailing (1 warning).",
    ]
    assert smtp_server.commands == []  # no MAIL FROM, nothing sent


def test_a_real_site_is_ready(cli: Run, real: Path, relay: TestSMTPServer) -> None:
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    record = public_record(real)
    assert lines(result.stdout) == [
        SETTINGS_OK,
        SECRET_OK,
        f"ok       relay: 127.0.0.1:{relay.port} answers, as test-smtp.localhost",
        "ok       relay TLS: none: the relay is on this machine (loopback), so nothing crosses "
        "the network",
        "ok       relay login: logged in as 'news'",
        "ok       DKIM key: dkim.pem: a 2048-bit RSA key, readable only by its owner and not "
        "tracked by git, for news1._domainkey.labourleft.org",
        ALIGNED,
        "",
        "DNS records to publish (zone-file lines, for your DNS provider):",
        'labourleft.org. IN TXT "v=spf1 mx ~all"',
        f'news1._domainkey.labourleft.org. IN TXT "{record[:255]}" "{record[255:]}"',
        '_dmarc.labourleft.org. IN TXT "v=DMARC1; p=none; rua=mailto:news@labourleft.org"',
        "",
        "Ready to send (0 warnings).",
    ]
    assert relay.logins == [("news", "s3cret")]
    assert relay.commands == [] and relay.messages == []  # never MAIL FROM


def test_json(cli: Run, real: Path, relay: TestSMTPServer) -> None:
    result = cli("doctor", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ready"] is True
    assert report["checks"][0] == {
        "name": "settings",
        "status": "ok",
        "detail": "no placeholder settings (site.base_url, site.sender, sending.bounce_address)",
        "fix": "",
    }
    assert [r["kind"] for r in report["records"]] == ["SPF", "DKIM", "DMARC"]
    assert report["records"][1]["value"] == public_record(real)
    assert report["records"][0] == {
        "kind": "SPF",
        "name": "labourleft.org",
        "value": "v=spf1 mx ~all",
        "zone": 'labourleft.org. IN TXT "v=spf1 mx ~all"',
    }


def test_json_of_a_site_that_is_not_ready_exits_1(
    cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(free_port()))
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["ready"] is False


# --- the secret key ---------------------------------------------------------------------------


def config(site_dir: Path) -> settings.Config:
    return settings.load(site_dir)


def test_no_secret_key(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSROOM_SECRET_KEY")
    (site_dir / ".env").unlink()
    assert doctor.secret_key_checks(config(site_dir)) == [
        Check(
            "secret key",
            PROBLEM,
            "NEWSROOM_SECRET_KEY is not set: the links in emails cannot be signed",
            "set NEWSROOM_SECRET_KEY in the environment or in .env (`newsroom init` writes one; "
            "or run: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
        )
    ]


def test_a_short_secret_key(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSROOM_SECRET_KEY", "labour2024")
    assert doctor.secret_key_checks(config(site_dir)) == [
        Check(
            "secret key",
            PROBLEM,
            "NEWSROOM_SECRET_KEY (from environment) is only 10 characters: a short key can be "
            "guessed, and with it every unsubscribe and preference link forged",
            "replace it with a new one made by python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))' (links in emails already sent then stop working, "
            "as they should if the old key may be known)",
        )
    ]


def test_the_key_of_newsroom_init_is_long_enough(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSROOM_SECRET_KEY")
    [check] = doctor.secret_key_checks(config(site_dir))
    assert check == Check("secret key", "ok", "set (43 characters, from .env)")


# --- the relay --------------------------------------------------------------------------------


def test_relay_down(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("NEWSROOM_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(port))
    assert doctor.relay_checks(config(site_dir)) == [
        Check(
            "relay",
            PROBLEM,
            f"cannot reach the SMTP relay 127.0.0.1:{port}: Connection refused",
            "check smtp.host and smtp.port: your provider's submission server, usually port 587 "
            'with smtp.security = "starttls" or 465 with "tls"',
        )
    ]


def test_starttls_with_a_self_signed_certificate(site_dir: Path, tls_relay: TestSMTPServer) -> None:
    assert doctor.relay_checks(config(site_dir)) == [
        Check("relay", "ok", f"localhost:{tls_relay.port} answers, as test-smtp.localhost"),
        Check(
            "relay TLS",
            PROBLEM,
            f"the TLS certificate of localhost:{tls_relay.port} is not valid: self-signed "
            "certificate",
            "set smtp.host to the name on the relay's certificate (the host name your provider "
            "documents); a self-signed or expired certificate must be replaced by whoever runs "
            "the relay",
        ),
    ]
    assert tls_relay.logins == []  # no password goes to a relay that is not proven


def test_starttls_with_a_valid_certificate_and_login(
    cli: Run,
    real: Path,
    tls_relay: TestSMTPServer,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # the machine now vouches for it
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[2:5] == [
        f"ok       relay: localhost:{tls_relay.port} answers, as test-smtp.localhost",
        "ok       relay TLS: STARTTLS, certificate valid for localhost (TLSv1.3)",
        "ok       relay login: logged in as 'news'",
    ]
    assert tls_relay.logins == [("news", "s3cret")] and tls_relay.commands == []


def test_tls_from_the_start(
    site_dir: Path,
    certificate: tuple[Path, Path],
    relay_context: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = TestSMTPServer(tls_context=relay_context, implicit_tls=True).start()
    try:
        monkeypatch.setenv("NEWSROOM_SMTP_HOST", "localhost")
        monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(server.port))
        monkeypatch.setenv("NEWSROOM_SMTP_SECURITY", "tls")
        [refused] = doctor.relay_checks(config(site_dir))
        assert refused.detail == (
            f"the TLS certificate of localhost:{server.port} is not valid: self-signed certificate"
        )
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        assert doctor.relay_checks(config(site_dir))[1:] == [
            Check(
                "relay TLS", "ok", "TLS from the start, certificate valid for localhost (TLSv1.3)"
            ),
            Check("relay login", "ok", "none: smtp.username is empty and the relay offers no AUTH"),
        ]
    finally:
        server.stop()


def test_login_refused(
    cli: Run, real: Path, relay: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_PASSWORD", "wrong")
    result = cli("doctor")
    assert result.exit_code == 1
    assert lines(result.stdout)[4:6] == [
        f"problem  relay login: 127.0.0.1:{relay.port} refused the login of smtp.username "
        "'news': 535 5.7.8 Authentication credentials invalid",
        "         what to do: check smtp.username and NEWSROOM_SMTP_PASSWORD",
    ]
    assert (
        lines(result.stdout)[-1]
        == "Not ready: 1 problem to fix before a real mailing (0 warnings)."
    )


def test_login_without_a_password(
    site_dir: Path, real: Path, relay: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSROOM_SMTP_PASSWORD")
    assert doctor.relay_checks(config(site_dir))[-1] == Check(
        "relay login",
        PROBLEM,
        f"127.0.0.1:{relay.port} refused the login of smtp.username 'news': 535 5.7.8 "
        "Authentication credentials invalid",
        "check smtp.username and NEWSROOM_SMTP_PASSWORD (it is not set)",
    )


def test_no_login_where_the_relay_offers_auth(site_dir: Path, relay: TestSMTPServer) -> None:
    assert doctor.relay_checks(config(site_dir))[-1] == Check(
        "relay login",
        WARNING,
        f"smtp.username is empty, but 127.0.0.1:{relay.port} offers AUTH: it may refuse to pass "
        "mail on without a login",
        "set smtp.username, and NEWSROOM_SMTP_PASSWORD, as your provider gives them",
    )


def test_a_login_where_the_relay_offers_no_auth(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_USERNAME", "news")
    assert doctor.relay_checks(config(site_dir))[-1] == Check(
        "relay login",
        PROBLEM,
        f"127.0.0.1:{smtp_server.port} offers no AUTH (RFC 4954), so smtp.username 'news' "
        "cannot log in",
        "check smtp.port and smtp.security: relays offer AUTH on their submission port, most "
        "only after TLS",
    )


def test_starttls_not_offered(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_SECURITY", "starttls")
    assert doctor.relay_checks(config(site_dir))[-1] == Check(
        "relay TLS",
        PROBLEM,
        f"127.0.0.1:{smtp_server.port} does not offer STARTTLS (RFC 3207)",
        "set smtp.port to the port where your provider offers it (usually 587), or use "
        'smtp.security = "tls" (usually port 465)',
    )


def test_tls_to_a_port_that_speaks_plain_smtp(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_SECURITY", "tls")
    monkeypatch.setenv("NEWSROOM_SMTP_TIMEOUT", "10")
    assert doctor.relay_checks(config(site_dir)) == [
        Check(
            "relay TLS",
            PROBLEM,
            f"TLS with 127.0.0.1:{smtp_server.port} failed: WRONG_VERSION_NUMBER",
            'check smtp.security against smtp.port: "tls" for a port that speaks TLS from the '
            'start (usually 465), "starttls" for one that upgrades (usually 587)',
        )
    ]


def test_no_tls_to_another_machine_is_a_problem_without_connecting(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_HOST", "smtp.labourleft.org")
    monkeypatch.setenv("NEWSROOM_SMTP_USERNAME", "news")
    assert doctor.relay_checks(config(site_dir)) == [
        Check(
            "relay TLS",
            PROBLEM,
            "smtp.security is none and smtp.labourleft.org is not this machine: mail and the "
            "password would cross the network in clear (the doctor did not connect)",
            'set smtp.security = "starttls" (usually with smtp.port = 587) or "tls" (usually '
            "465), as your provider documents",
        )
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True),
     ("[::1]", True), ("box.localhost", True), ("smtp.labourleft.org", False),
     ("10.0.0.5", False), ("localhost.labourleft.org", False)],
)  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert doctor.is_loopback(host) is loopback


def test_dev_smtp_is_a_warning(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = TestSMTPServer(hostname=DEV_SMTP_NAME).start()
    try:
        monkeypatch.setenv("NEWSROOM_SMTP_HOST", server.host)
        monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(server.port))
        assert doctor.relay_checks(config(site_dir))[0] == Check(
            "relay",
            WARNING,
            f"127.0.0.1:{server.port} is `newsroom dev-smtp`: it keeps every message in a "
            "Maildir and delivers none",
            "set smtp.host and smtp.port to your provider's relay",
        )
    finally:
        server.stop()


def test_text_from_outside_is_shown_safely() -> None:
    assert doctor.shown("evil\x1b[2Jname") == "evil?[2Jname"
    assert doctor.shown("x" * 300) == "x" * 199 + "…"


# --- DKIM -------------------------------------------------------------------------------------


def dkim(site_dir: Path) -> list[Check]:
    return doctor.dkim_checks(config(site_dir))


def test_a_1024_bit_key_is_a_warning(site_dir: Path, real: Path, rsa_keys: dict[int, Path]) -> None:
    install_key(site_dir, rsa_keys[1024])
    assert dkim(site_dir) == [
        Check(
            "DKIM key",
            WARNING,
            "dkim.pem is a 1024-bit RSA key: 2048 bits are advised (RFC 8301 §3.2)",
            ROTATE + " before switching to it",
        ),
        Check(
            "DMARC alignment",
            "ok",
            "dkim.domain labourleft.org is aligned with the From domain labourleft.org",
        ),
    ]


def test_a_512_bit_key_is_a_problem(
    cli: Run, site_dir: Path, real: Path, rsa_keys: dict[int, Path], relay: TestSMTPServer
) -> None:
    install_key(site_dir, rsa_keys[512])
    assert dkim(site_dir)[0] == Check(
        "DKIM key",
        PROBLEM,
        "dkim.pem is a 512-bit RSA key: receivers ignore signatures made with keys under 1024 "
        "bits (RFC 8301 §3.2)",
        ROTATE,
    )
    assert cli("doctor").exit_code == 1


def test_a_key_every_user_can_read(site_dir: Path, real: Path, rsa_keys: dict[int, Path]) -> None:
    path = install_key(site_dir, rsa_keys[2048], mode=0o644)
    assert dkim(site_dir)[0] == Check(
        "DKIM key",
        PROBLEM,
        "dkim.pem is readable by every user of this machine (mode 0644): anyone who reads it can "
        "sign mail as you",
        f"chmod 600 {path}",
    )


def test_a_key_tracked_by_git(site_dir: Path, real: Path) -> None:
    subprocess.run(["git", "init", "-q", str(site_dir)], check=True)
    # -f: the site's .gitignore keeps *.pem out, and this is someone who forced it in anyway
    subprocess.run(["git", "-C", str(site_dir), "add", "-f", "dkim.pem"], check=True)
    assert dkim(site_dir)[0] == Check(
        "DKIM key",
        PROBLEM,
        "dkim.pem is tracked by git: everyone with a copy of the repository can sign mail as "
        "labourleft.org",
        f"git rm --cached {real} and add it to .gitignore; the key stays in the history, so "
        "make a new one and publish it under a new dkim.selector",
    )


def test_a_key_in_an_untracked_file_of_a_repository_is_fine(site_dir: Path, real: Path) -> None:
    subprocess.run(["git", "init", "-q", str(site_dir)], check=True)
    assert dkim(site_dir)[0].status == "ok"


def test_a_missing_key(site_dir: Path, real: Path) -> None:
    real.unlink()
    assert dkim(site_dir) == [
        Check(
            "DKIM key",
            PROBLEM,
            f"dkim.key_file: cannot read {real}: No such file or directory",
            "dkim.key_file must name an unencrypted PEM RSA private key, relative to the site "
            "folder (make one with openssl genrsa -out dkim.pem 2048 && chmod 600 dkim.pem)",
        )
    ]


def test_a_file_that_is_not_a_key(site_dir: Path, real: Path) -> None:
    real.write_text("-----BEGIN CERTIFICATE-----\nnot a key\n", encoding="utf-8")
    assert dkim(site_dir)[0].detail == (
        f"dkim.key_file: {real}: not a PEM private key without a passphrase"
    )


def test_dkim_domain_without_selector(
    site_dir: Path, real: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSROOM_DKIM_SELECTOR")
    assert dkim(site_dir)[0].detail == (
        "dkim.domain is set, so dkim.selector and dkim.key_file must be too"
    )


def test_dkim_domain_not_aligned(
    site_dir: Path, real: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_DKIM_DOMAIN", "mailprovider.net")
    assert dkim(site_dir)[-1] == Check(
        "DMARC alignment",
        WARNING,
        "dkim.domain mailprovider.net is neither the From domain labourleft.org nor a parent or "
        "subdomain of it: DMARC does not count the signature (RFC 7489 §3.1.1)",
        'set dkim.domain = "labourleft.org" and publish the key there',
    )


@pytest.mark.parametrize(
    ("dkim_domain", "from_domain", "aligned"),
    [("labourleft.org", "labourleft.org", True), ("labourleft.org", "news.labourleft.org", True),
     ("mail.labourleft.org", "labourleft.org", True), ("LabourLeft.org.", "labourleft.org", True),
     ("left.org", "labourleft.org", False), ("other.org", "labourleft.org", False)],
)  # fmt: skip
def test_relaxed_alignment(dkim_domain: str, from_domain: str, aligned: bool) -> None:
    assert doctor.aligned(dkim_domain, from_domain) is aligned


# --- DNS records ------------------------------------------------------------------------------


def test_the_dkim_record_is_the_keys_and_split_in_255_byte_strings(
    site_dir: Path, real: Path
) -> None:
    [_, record, _] = dnsrecords.records(config(site_dir))
    assert record.value == public_record(real)
    owner, strings = record.zone.split(" IN TXT ")
    assert owner == "news1._domainkey.labourleft.org."
    assert [len(s) for s in re.findall(r'"([^"]*)"', strings)] == [255, len(record.value) - 255]


@pytest.mark.parametrize(
    ("host", "mechanism"),
    [("smtp.mailprovider.net", "a:smtp.mailprovider.net"), ("192.0.2.25", "ip4:192.0.2.25"),
     ("2001:db8::25", "ip6:2001:db8::25"), ("localhost", "mx"), ("127.0.0.1", "mx"),
     ("smtp.example.org", "mx")],
)  # fmt: skip
def test_spf_names_the_relay(host: str, mechanism: str) -> None:
    assert dnsrecords._spf_mechanism(host) == mechanism


def test_zone_strings_are_escaped() -> None:
    record = Record("DMARC", "_dmarc.labourleft.org", 'v=DMARC1; p=none; rua=mailto:"a\\b"@é.org')
    assert record.zone == (
        '_dmarc.labourleft.org. IN TXT "v=DMARC1; p=none; rua=mailto:\\"a\\\\b\\"@\\195\\169.org"'
    )


def test_an_internationalised_domain_is_written_in_a_labels() -> None:
    record = Record("SPF", "münchen-links.de", "v=spf1 mx ~all")
    assert record.zone == 'xn--mnchen-links-dlb.de. IN TXT "v=spf1 mx ~all"'


@pytest.mark.parametrize(
    ("text", "server"),
    [("ns1.dns-provider.net", ("ns1.dns-provider.net", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
     ("[::1]:5353", ("::1", 5353)), ("2001:db8::53", ("2001:db8::53", 53))],
)  # fmt: skip
def test_parse_nameserver(text: str, server: tuple[str, int]) -> None:
    assert dnsrecords.parse_nameserver(text) == server


@pytest.mark.parametrize("text", ["ns1:99999", "ns1:", ":53", "[::1]:x", "a:b:c:x]", ""])
def test_bad_nameservers(text: str) -> None:
    with pytest.raises(NewsroomError):
        dnsrecords.parse_nameserver(text)


def test_a_bad_nameserver_is_one_line(cli: Run) -> None:
    result = cli("doctor", "--nameserver", "ns1:99999")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: --nameserver 'ns1:99999': write HOST or HOST:PORT, such as "
        "ns1.your-dns-provider.net or 127.0.0.1:5353\n"
    )
    assert result.stdout == ""


@pytest.fixture
def dns_server() -> Iterator[TestDNSServer]:
    server = TestDNSServer().start()
    yield server
    server.stop()


def test_published_records_are_ok(
    cli: Run, real: Path, relay: TestSMTPServer, dns_server: TestDNSServer
) -> None:
    record = public_record(real)
    dns_server.records.update(
        {
            "labourleft.org": ["v=spf1 mx ~all", "google-site-verification=abc"],
            "news1._domainkey.labourleft.org": [[record[:200], record[200:]]],
            "_dmarc.labourleft.org": ["v=DMARC1; p=reject; rua=mailto:dmarc@labourleft.org"],
        }
    )
    result = cli("doctor", "--nameserver", f"127.0.0.1:{dns_server.port}")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[-5:] == [
        "ok       DNS SPF: published at labourleft.org: v=spf1 mx ~all",
        f"ok       DNS DKIM: published at news1._domainkey.labourleft.org: {record[:199]}…",
        "ok       DNS DMARC: published at _dmarc.labourleft.org: v=DMARC1; p=reject; "
        "rua=mailto:dmarc@labourleft.org",
        "",
        "Ready to send (0 warnings).",
    ]
    assert dns_server.questions == [
        "labourleft.org TXT",
        "news1._domainkey.labourleft.org TXT",
        "_dmarc.labourleft.org TXT",
    ]


def test_missing_and_different_records_are_warnings(
    cli: Run,
    real: Path,
    relay: TestSMTPServer,
    dns_server: TestDNSServer,
    rsa_keys: dict[int, Path],
) -> None:
    other = public_record(rsa_keys[1024])
    dns_server.records.update(
        {
            "labourleft.org": ["v=spf1 include:_spf.mailprovider.net -all"],
            "news1._domainkey.labourleft.org": [other],
        }
    )
    result = cli("doctor", "--dns", "--nameserver", f"127.0.0.1:{dns_server.port}")
    assert result.exit_code == 0  # advice: the mail still goes out
    assert lines(result.stdout)[-8:] == [
        "warning  DNS SPF: the SPF record at labourleft.org is 'v=spf1 "
        "include:_spf.mailprovider.net -all', not the one to publish",
        "         what to do: make sure it names your relay, or publish the SPF record the "
        "doctor prints",
        f"warning  DNS DKIM: the DKIM record at news1._domainkey.labourleft.org is "
        f"'{doctor.shown(other)}', not the one to publish",
        "         what to do: publish this key's DKIM record: signatures made with dkim.key_file "
        "fail against another key",
        "warning  DNS DMARC: no DMARC record at _dmarc.labourleft.org",
        "         what to do: publish the DMARC record the doctor prints",
        "",
        "Ready to send (3 warnings).",
    ]


def test_two_spf_records(site_dir: Path, real: Path, dns_server: TestDNSServer) -> None:
    dns_server.records["labourleft.org"] = ["v=spf1 mx ~all", "v=spf1 a -all"]
    wanted = dnsrecords.records(config(site_dir))[:1]
    assert dnsrecords.dns_checks(wanted, ("127.0.0.1", dns_server.port)) == [
        Check(
            "DNS SPF",
            WARNING,
            "2 SPF records at labourleft.org: receivers then use none (RFC 7208 §4.5)",
            "keep only one: publish the SPF record the doctor prints",
        )
    ]


def test_a_name_server_that_refuses(cli: Run, real: Path, relay: TestSMTPServer) -> None:
    server = TestDNSServer(refuse=True).start()
    try:
        result = cli("doctor", "--dns", "--nameserver", f"127.0.0.1:{server.port}")
    finally:
        server.stop()
    assert result.exit_code == 0
    assert lines(result.stdout)[-4:] == [
        f"warning  DNS: records not checked: the name server 127.0.0.1:{server.port} refused or "
        "failed the query (no network?)",
        "         what to do: run `newsroom doctor --dns` where there is network, or ask your DNS "
        "provider's server with --nameserver HOST",
        "",
        "Ready to send (1 warning).",
    ]


def test_no_network_says_so(site_dir: Path, real: Path) -> None:
    port = closed_udp_port()  # nobody answers, as with no network at all
    wanted = dnsrecords.records(config(site_dir))
    assert dnsrecords.dns_checks(wanted, ("127.0.0.1", port), lifetime=0.3) == [
        Check(
            "DNS",
            WARNING,
            f"records not checked: no answer from the name server 127.0.0.1:{port} within 0.3 "
            "seconds (no network?)",
            "run `newsroom doctor --dns` where there is network, or ask your DNS provider's "
            "server with --nameserver HOST",
        )
    ]
