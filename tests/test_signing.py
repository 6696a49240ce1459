"""DKIM signatures (mail/dkim.py), checked by an independent implementation: dkimpy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dkim
import pytest
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st

from newsroom.errors import NewsroomError
from newsroom.mail.dkim import Signer, relaxed_body, relaxed_header


def verifies(message: bytes, record: bytes) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.example.org."
        return record

    return bool(dkim.verify(message, dnsfunc=dns))


AWKWARD = (
    b"From: Newsroom <news@example.org>\r\n"
    b"To:   ann@example.net \r\n"
    b"Subject: A subject\r\n folded\tover  two lines\r\n"
    b"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"List-Id: Campaign News <news.example.org>\r\n"
    b"List-Unsubscribe: <https://example.org/unsubscribe/abc>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"X-Not-Signed: anything\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"\r\n"
    b"Tabs\tand  runs   of spaces, \r\n"
    b"trailing spaces   \r\n"
    b"\r\n"
    b"and empty lines at the end\r\n\r\n\r\n"
)


def test_signatures_verify_with_dkimpy_and_break_when_tampered(
    dkim_key: tuple[bytes, bytes],
) -> None:
    private, record = dkim_key
    signed = Signer("example.org", "news", private).sign(AWKWARD) + AWKWARD
    assert verifies(signed, record)
    assert verifies(b"Received: by relay\r\n" + signed, record)  # added on the way: fine
    assert not verifies(signed.replace(b"empty lines", b"empty  line"), record)
    assert not verifies(signed.replace(b"A subject", b"Re: A subject"), record)
    assert not verifies(signed.replace(b"/unsubscribe/abc", b"/unsubscribe/xyz"), record)
    header = signed.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))  # RFC 5322 §2.1.1
    h = header.split(b"h=")[1].split(b";")[0].replace(b"\r\n ", b"")
    assert h == (
        b"from:to:subject:date:message-id:list-id:list-unsubscribe:list-unsubscribe-post:"
        b"mime-version:content-type"
    )


def test_an_empty_body_verifies(dkim_key: tuple[bytes, bytes]) -> None:
    private, record = dkim_key
    message = AWKWARD.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert verifies(Signer("example.org", "news", private).sign(message) + message, record)


WHITESPACE_TEXT = st.lists(st.sampled_from([b"a", b"b", b" ", b"\t", b"\r\n"]), max_size=40)


@given(WHITESPACE_TEXT)
def test_body_canonicalisation_is_dkimpys(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(WHITESPACE_TEXT)
def test_header_canonicalisation_is_dkimpys(parts: list[bytes]) -> None:
    value = b"".join(parts).replace(b"\r\n", b"\r\n ")  # a header continues after a fold
    [(name, canonical)] = Relaxed.canonicalize_headers([(b"Subject", value)])
    assert relaxed_header(b"Subject", value) == name + b":" + canonical


def test_keys_that_cannot_sign_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NewsroomError, match="not a PEM private key"):
        Signer("example.org", "news", b"-----BEGIN PRIVATE KEY-----\nnope\n")
    ed25519 = tmp_path / "ed.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(ed25519)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(NewsroomError, match="not an RSA private key"):
        Signer("example.org", "news", ed25519.read_bytes())
