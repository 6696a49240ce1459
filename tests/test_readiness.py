"""readiness.py: which settings are placeholders a real mailing must not go out with."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsroom import settings
from newsroom.delivery import readiness


@pytest.mark.parametrize(
    ("domain", "words"),
    [
        ("example.org", "an example domain"),
        ("news.example.com", "an example domain"),
        ("example.co.uk", "an example domain"),
        ("localhost", "reserved for tests"),
        ("mail.test", "reserved for tests"),
        ("x.invalid", "reserved for tests"),
        ("box.localhost", "reserved for tests"),
        ("printer.local", "reserved for tests"),
        ("127.0.0.1", "an IP address"),
        ("[::1]", "an IP address"),
        ("intranet", "no dot"),
        ("", "reserved for tests"),
    ],
)
def test_placeholder_domains(domain: str, words: str) -> None:
    reason = readiness.placeholder_domain(domain)
    assert reason is not None and words in reason


@pytest.mark.parametrize("domain", ["labourleft.org", "news.disability-group.org.uk", "münchen.de"])
def test_real_domains(domain: str) -> None:
    assert readiness.placeholder_domain(domain) is None


def config(tmp_path: Path, environ: dict[str, str]) -> settings.Config:
    (tmp_path / "newsroom.toml").write_text("", encoding="utf-8")
    return settings.load(tmp_path, environ)


def test_a_new_site_names_every_placeholder(tmp_path: Path) -> None:
    refused = readiness.refusal(config(tmp_path, {}))
    assert refused.splitlines() == [
        "a real mailing cannot go out with placeholder settings (a --test copy, or a send to "
        "`newsroom dev-smtp`, can):",
        "  site.base_url is 'http://localhost:8000': a name reserved for tests and examples "
        "(RFC 2606, RFC 6761); set it to the https:// address of your public web side, such as "
        "https://news.your-organisation.org (unsubscribe and preference links, and List-Id, "
        "are made from it)",
        "  site.sender is 'Newsroom <newsroom@example.org>': its domain is an example domain, "
        "not yours; set it to an address at your own domain (the From: address and the "
        'Message-ID domain), such as "Our Campaign <news@your-organisation.org>"',
        "  sending.bounce_address is 'bounces@example.org': its domain is an example domain, "
        "not yours; set it to an address at your own domain (the envelope sender that bounce "
        "reports come back to), such as bounces@your-organisation.org (its mailbox must also "
        "take bounces+anything@ — plus-addressing — see Going live)",
        "Set them in newsroom.toml (or NEWSROOM_* variables); `newsroom doctor` checks the rest.",
    ]


def test_http_on_a_real_host_is_still_refused(tmp_path: Path) -> None:
    found = readiness.problems(
        config(
            tmp_path,
            {
                "NEWSROOM_SITE_BASE_URL": "http://news.labourleft.org",
                "NEWSROOM_SITE_SENDER": "Labour Left <news@labourleft.org>",
                "NEWSROOM_SENDING_BOUNCE_ADDRESS": "bounces@labourleft.org",
            },
        )
    )
    assert [(u.setting, u.problem) for u in found] == [
        ("site.base_url", "not https:// (one-click unsubscribe needs https, RFC 8058)")
    ]


def test_real_settings_are_ready(tmp_path: Path) -> None:
    ready = config(
        tmp_path,
        {
            "NEWSROOM_SITE_BASE_URL": "https://news.labourleft.org",
            "NEWSROOM_SITE_SENDER": "Labour Left <news@labourleft.org>",
            "NEWSROOM_SENDING_BOUNCE_ADDRESS": "bounces@labourleft.org",
        },
    )
    assert readiness.problems(ready) == []
