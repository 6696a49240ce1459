"""One-click unsubscribes (RFC 8058 POSTs, each with its own token, each changing a row and
writing a ledger event) per second against `newsroom serve` on loopback, next to the same
server's trivial `/healthz` endpoint (a Starlette hello) measured in the same run. Target: >= 0.5.

The load generator is asyncio with raw HTTP/1.1 keep-alive sockets: CONNECTIONS at once, a bounded
number of requests and a time limit, 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from newsroom import site as sites
from newsroom.database import transaction
from newsroom.models import MailingList, Subscriber, Subscription
from newsroom.people import imports, lists, subscribers
from newsroom.site import Site

PEOPLE = 4000
CONNECTIONS = 8
TIME_LIMIT = 60.0  # seconds per measurement, at most
HOST = "127.0.0.1"


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _load(port: int, requests: list[bytes]) -> tuple[float, int]:
    """Send REQUESTS over CONNECTIONS keep-alive sockets; returns (seconds, non-200 answers)."""
    queue = list(reversed(requests))
    failures = 0
    deadline = time.perf_counter() + TIME_LIMIT

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(HOST, port)
        while queue and time.perf_counter() < deadline:
            if await _one(reader, writer, queue.pop()) != 200:
                failures += 1
        writer.close()
        await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return time.perf_counter() - started, failures + len(queue)


def hello_request() -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def unsubscribe_request(token: str) -> bytes:
    body = b"List-Unsubscribe=One-Click"
    return (
        f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: {HOST}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def prepare(site_dir: Path) -> list[str]:
    """A site with PEOPLE confirmed members of all-members; one unsubscribe token each, as a
    mailing to all-members makes them."""
    sites.init(site_dir, "Bench")
    csv = site_dir / "people.csv"
    csv.write_text(
        "email,name\n" + "".join(f"p{n}@example.org,P {n}\n" for n in range(PEOPLE)),
        encoding="utf-8",
    )
    site = Site.open(site_dir)
    now = datetime.now(UTC)
    lists.sync(site)
    imports.import_file(
        site, csv, list_slugs=["all-members"], confirmed=True, consent_text="bench", now=now
    )
    with transaction(site.engine) as session:
        people = session.execute(select(Subscriber.id, Subscriber.email)).all()
        members = session.scalars(select(MailingList.id).where(MailingList.slug == "all-members"))
        scope = list(members)  # a mailing's links name the lists it went to, and the mailing
    found = [
        subscribers.unsubscribe_token(site, i, e, scope, now=now, mailing_id=1) for i, e in people
    ]
    site.close()
    return found


def remaining(site_dir: Path) -> int:
    site = Site.open(site_dir)
    with transaction(site.engine) as session:
        count = session.scalar(select(func.count()).where(Subscription.status == "confirmed"))
    site.close()
    return int(count or 0)


def serve(site_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`newsroom serve` on a free loopback port, polled until it answers."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, "-m", "newsroom", "--site", str(site_dir), "serve"]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, "--port", str(port)], stdout=out, stderr=out)
    for _ in range(200):
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"newsroom serve did not start:\n{log.read_text()}")


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        site_dir = Path(work) / "site"
        os.environ["NEWSROOM_SECRET_KEY"] = "bench-secret-key-not-for-production"
        os.environ.pop("NEWSROOM_DATABASE_URL", None)
        tokens = prepare(site_dir)
        server, port = serve(site_dir, Path(work) / "serve.log")
        try:
            asyncio.run(_load(port, [hello_request()] * 500))  # warm up
            half = len(tokens) // 2
            results = []
            # hello, unsubscribe, hello, unsubscribe: interleaved so drift hits both alike
            for batch in (tokens[:half], tokens[half:]):
                seconds, bad = asyncio.run(_load(port, [hello_request()] * len(batch)))
                results.append(("hello", len(batch) / seconds, bad))
                requests = [unsubscribe_request(t) for t in batch]
                seconds, bad = asyncio.run(_load(port, requests))
                results.append(("unsubscribe", len(batch) / seconds, bad))
        finally:
            server.terminate()
            server.wait(10)
        left = remaining(site_dir)
    hello = [r for name, r, _ in results if name == "hello"]
    unsub = [r for name, r, _ in results if name == "unsubscribe"]
    failures = sum(bad for _, _, bad in results)
    hello_rate, unsub_rate = sum(hello) / len(hello), sum(unsub) / len(unsub)
    print(f"newsroom serve on {HOST}, {CONNECTIONS} keep-alive connections, {PEOPLE} members")
    print(f"  GET /healthz (Starlette hello)        {hello_rate:8.0f} requests/s")
    print(f"  POST /unsubscribe/TOKEN (one-click)   {unsub_rate:8.0f} requests/s")
    print(
        f"  ratio {unsub_rate / hello_rate:.2f} (target >= 0.5); non-200 answers: {failures}; "
        f"members still subscribed: {left}"
    )
    if failures or left:
        sys.exit(1)


if __name__ == "__main__":
    main()
