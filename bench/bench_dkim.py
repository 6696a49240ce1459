"""DKIM signing per message: newsroom's signer (mail/dkim.py) next to dkimpy's `dkim.sign` as the
reference, on the same messages in the same run: the sln-bulletin issue built for different
recipients (about 30 KB each), 2048-bit RSA, relaxed/relaxed. Both signatures are checked with
dkimpy's verify first. Run: .venv/bin/python bench/bench_dkim.py"""

from __future__ import annotations

import base64
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import dkim

from newsroom.compose.issues import load_all
from newsroom.compose.rendering import render
from newsroom.mail import messages
from newsroom.mail.dkim import SIGNED_HEADERS, Signer
from newsroom.mail.messages import MessageTemplate, Recipient
from newsroom.site import Site

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 300


def key_pair() -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as work:
        key = Path(work) / "key.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        public = subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        return key.read_bytes(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def built_messages() -> list[bytes]:
    site = Site.open(ROOT)
    issue = next(i for i in load_all(site) if i.slug == "sln-bulletin")
    variant = render(issue, site.config).variants["email"]
    template = MessageTemplate(
        subject=variant.subject,
        text=variant.text,
        html=variant.html,
        sender=("Campaign News", "news@example.org"),
        list_id="Campaign News <news.example.org>",
        message_id_domain="example.org",
    )
    date = messages.DateHeader().date()
    return [
        template.build(
            Recipient(f"member{n}@example.net", f"Addressee {n}", f"https://x.org/unsubscribe/{n}"),
            messages.new_message_id("example.org"),
            date,
        )
        for n in range(MESSAGES)
    ]


def per_message(sign: object, found: list[bytes]) -> float:
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for message in found:
            sign(message)  # type: ignore[operator]
        rounds.append((time.perf_counter() - started) / len(found))
    return statistics.median(rounds)


def main() -> None:
    private, record = key_pair()
    found = built_messages()
    ours = Signer("example.org", "news", private)

    def reference(message: bytes) -> bytes:
        return bytes(
            dkim.sign(
                message, b"news", b"example.org", private,
                canonicalize=(b"relaxed", b"relaxed"), include_headers=list(SIGNED_HEADERS),
                linesep=b"\r\n",
            )
        )  # fmt: skip

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record

    for sign in (ours.sign, reference):
        assert dkim.verify(sign(found[0]) + found[0], dnsfunc=dns)
    size = statistics.mean(len(m) for m in found) / 1024
    theirs, mine = per_message(reference, found), per_message(ours.sign, found)
    print(f"{MESSAGES} messages of {size:.0f} KB, RSA 2048, relaxed/relaxed")
    print(f"  dkimpy dkim.sign    {theirs * 1000:6.2f} ms per message ({1 / theirs:6.0f}/s)")
    print(f"  newsroom Signer     {mine * 1000:6.2f} ms per message ({1 / mine:6.0f}/s)")
    print(f"  newsroom is {theirs / mine:.1f}x faster")


if __name__ == "__main__":
    main()
