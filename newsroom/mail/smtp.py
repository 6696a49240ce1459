"""SMTP connections: single messages (confirmations) and a pool that sends bulk messages fast.

A single message is an `EmailMessage`, flattened here to the bytes that go out so that it can
be DKIM-signed like the bulk messages (`dkim.signer`), and sent with the envelope sender its
caller gives (a VERP address: `verp.py`), never the From address.

The pool opens `smtp.connections` connections with aiosmtplib (TLS with certificate checks,
STARTTLS, login), then drives each one with a small protocol of its own: the message bytes from
`messages.py` are already dot-safe with CRLF line ends, so they go out as they are, and when the
relay offers PIPELINING (RFC 2920) MAIL, RCPT and DATA travel in one write. Each answer is
classified (`RelayAnswer.kind`) for the mailing to act on.

Recipients come in their wire form (`messages.wire_address`: the domain as an IDNA A-label). One
whose local part is still non-ASCII needs SMTPUTF8 (RFC 6531): it goes with that when the relay
offers it, and is not offered to a relay that does not (`UNSENDABLE`, with the reason).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
from aiosmtplib.email import extract_recipients

from newsroom.errors import NewsroomError
from newsroom.mail import asyncrun, dkim
from newsroom.mail.ratelimit import Limiter, RateLimiter
from newsroom.settings import Config

SENT, RETRY, FAIL, POLICY = "sent", "retry", "fail", "policy"
UNSENDABLE = "unsendable"  # not offered to the relay at all: the relay is not at fault
UNREACHED = "unreached"  # no connection could be opened: nothing offered, the pool stops


class RelayError(NewsroomError):
    """The relay could not be reached, refused the login, or refused a single message: the
    message was not sent, and the words say why. What the web side catches when a
    confirmation cannot go (the person's answer has gone already; the log says it)."""


class NotOffered(RelayError):
    """The relay lacks an SMTP extension this one message needs (SMTPUTF8)."""


def smtp_client(config: Config) -> aiosmtplib.SMTP:
    """An unconnected client for the configured relay (TLS with certificate checks)."""
    security = config.text("smtp.security")
    return aiosmtplib.SMTP(
        hostname=config.text("smtp.host"),
        port=config.integer("smtp.port"),
        timeout=config.number("smtp.timeout"),
        use_tls=security == "tls",
        start_tls=security == "starttls",
        tls_context=ssl.create_default_context() if security != "none" else None,
    )


def relay_name(config: Config) -> str:
    return f"{config.text('smtp.host')}:{config.integer('smtp.port')}"


def unreachable(config: Config, exc: BaseException) -> str:
    return (
        f"cannot reach the SMTP relay {relay_name(config)}: {exc} "
        "(start one with `newsroom dev-smtp`, or set [smtp] host and port)"
    )


def no_smtputf8(config: Config) -> str:
    """Why a message to an address with a non-ASCII local part cannot go through this relay."""
    return (
        f"the relay {relay_name(config)} does not offer SMTPUTF8 (RFC 6531), needed for an "
        "address with non-ASCII characters before the @"
    )


async def connect(config: Config) -> aiosmtplib.SMTP:
    """A client connected to the relay, greeted (EHLO), through TLS and logged in; raises
    RelayError saying why when it cannot be."""
    client = smtp_client(config)
    try:
        await client.connect()
        await client._ehlo_or_helo_if_needed()  # connect() leaves it out without TLS/login
        if config.text("smtp.username"):
            await client.login(config.text("smtp.username"), config.text("smtp.password"))
    except aiosmtplib.SMTPAuthenticationError as exc:
        await _closed(client)
        raise RelayError(
            f"the SMTP relay {relay_name(config)} refused the login of smtp.username "
            f"{config.text('smtp.username')!r}: {exc.code} {exc.message} "
            "(check NEWSROOM_SMTP_PASSWORD)"
        ) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        await _closed(client)
        raise RelayError(unreachable(config, exc)) from None
    return client


def send_message(config: Config, message: EmailMessage, envelope_from: str) -> str:
    """Send one message (a confirmation) and wait for the relay's answer."""
    with OneConnection(config) as relay:
        return relay.send(message, envelope_from)


def flatten(message: EmailMessage, envelope: list[str]) -> tuple[bytes, bool]:
    """MESSAGE as the bytes to sign and send (CRLF line ends), and whether they need SMTPUTF8.

    RFC 6531 §3.4: SMTPUTF8 when an address of the envelope (ENVELOPE) or of a header field is
    not ASCII (recipients come in wire form, so it is their local part); then the header fields
    go as raw UTF-8 (RFC 6532 §3.2). The body is always 7-bit (cte_type: 8-bit parts become
    base64), so the bytes signed are the bytes any relay takes without converting them, which
    would break the signature.
    """
    addresses = list(envelope)
    for name in ("From", "Sender", "Reply-To", "To", "Cc"):
        for field in message.get_all(name, []):
            addresses += [address.addr_spec for address in getattr(field, "addresses", ())]
    utf8 = not all(address.isascii() for address in addresses)
    chosen = (policy.SMTPUTF8 if utf8 else policy.SMTP).clone(cte_type="7bit")
    return message.as_bytes(policy=chosen), utf8


class OneConnection:
    """Single messages one after another on one connection, opened when first needed and
    reopened if the relay drops it: the confirmations an import leaves to send. Each is signed
    with the site's DKIM key when one is set, as every bulk message is."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.signer = dkim.signer(config)  # a bad DKIM setting stops us before any message
        self.runner = asyncio.Runner()
        self.client: aiosmtplib.SMTP | None = None

    def send(self, message: EmailMessage, envelope_from: str) -> str:
        return asyncrun.run(self._send(message, envelope_from), self.runner)

    async def _send(self, message: EmailMessage, envelope_from: str) -> str:
        recipients = extract_recipients(message)
        data, utf8 = flatten(message, [envelope_from, *recipients])
        if self.signer is not None:
            data = self.signer.sign(data) + data
        if self.client is None or not self.client.is_connected:
            self.client = await connect(self.config)
        options = []
        if utf8:
            if not self.client.supports_extension("smtputf8"):
                raise NotOffered(no_smtputf8(self.config))  # never offered: RFC 6531 §3.4
            # RFC 6531 §3.1: a relay offering SMTPUTF8 offers 8BITMIME (RFC 6152) too, and the
            # UTF-8 header fields are 8-bit data
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        try:
            _errors, answer = await self.client.sendmail(
                envelope_from, recipients, data, mail_options=options
            )
            return answer
        except aiosmtplib.SMTPException as exc:
            raise RelayError(
                f"the SMTP relay {relay_name(self.config)} refused the message: {exc}"
            ) from None
        except OSError as exc:
            raise RelayError(unreachable(self.config, exc)) from None

    def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            transport = self.client.transport
            try:
                self.runner.run(self.client.quit())
            except (aiosmtplib.SMTPException, OSError):
                self.client.close()
            self.runner.run(_released(transport))
        self.runner.close()

    def __enter__(self) -> OneConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- bulk sending ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One message to send: KEY names it to the caller (a delivery id)."""

    key: int
    sender: str  # envelope sender (VERP)
    recipient: str
    data: bytes  # from messages.Template.build: CRLF, dot-safe, no final "."


@dataclass(frozen=True)
class RelayAnswer:
    """What the relay said about one message, and what that means (`kind`)."""

    key: int
    kind: str  # sent, retry (4xx, 421, 552, connection lost), fail (5xx), policy (5.7.x),
    # unsendable (never offered to this relay: it lacks SMTPUTF8), or unreached (the relay
    # does not answer at all: never offered, and the pool takes no more)
    code: int
    text: str

    @property
    def answer(self) -> str:
        return f"{self.code} {self.text}".strip() if self.code else self.text


def classify(code: int, text: str) -> str:
    """The kind of outcome of an SMTP answer (RFC 5321 §4.2.1, RFC 3463 enhanced codes)."""
    if 200 <= code < 300:
        return SENT
    if code == 552 or 400 <= code < 500:
        return RETRY  # RFC 5321 §4.5.3.1.10: treat 552 on too much data as temporary
    if text.startswith("5.7."):
        return POLICY  # the relay refuses us, not the recipient: stop and tell a person
    return FAIL


class Journal(Protocol):
    """Hears when each message's end-of-data dot goes to the relay and when the relay answers
    it (journal.py keeps this on disk, so a crash leaves only those in between uncertain)."""

    def handed(self, key: int) -> None: ...

    def answered(self, key: int, code: int) -> None: ...


class NoJournal:
    def handed(self, key: int) -> None:
        pass

    def answered(self, key: int, code: int) -> None:
        pass


class ConnectionLost(Exception):
    """The relay closed the connection or did not answer in time."""


class _Wire(asyncio.Protocol):
    """Reads SMTP answers as they come (several at once when commands are pipelined)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.answers: deque[tuple[int, str]] = deque()
        self.lines: list[str] = []
        self.waiter: asyncio.Future[None] | None = None
        self.lost: str = ""
        # Done when the transport has let go of its socket: a TLS close takes a few turns of
        # the loop (close_notify both ways), and a loop that stops first leaks the socket.
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            self.lines.append(line[4:].strip().decode("utf-8", "replace"))
            if line[3:4] != b"-":
                try:
                    code = int(line[:3])
                except ValueError:
                    code = 0
                self.answers.append((code, " ".join(self.lines)))
                self.lines = []
        if self.answers:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or f"connection lost{': ' + str(exc) if exc else ''}"
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def eof_received(self) -> bool:
        self.lost = self.lost or "the relay closed the connection"
        self._wake()
        return False

    def timeout(self) -> None:
        self.lost = "the relay did not answer in time"
        self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def answer(self) -> tuple[int, str]:
        while not self.answers:
            if self.lost:
                raise ConnectionLost(self.lost)
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
            self.waiter = None
        return self.answers.popleft()

    def write(self, data: bytes) -> None:
        if self.lost or self.transport.is_closing():
            raise ConnectionLost(self.lost or "connection closed")
        self.transport.write(data)


class Connection:
    """One SMTP session: many messages, pipelined when offered, re-opened after a drop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.timeout = config.number("smtp.timeout")
        self.wire: _Wire | None = None
        self.closing: list[_Wire] = []  # closed, their sockets perhaps not yet released
        self.pipelining = False
        self.smtputf8 = False
        self.greeting = ""  # the relay's EHLO answer: its name first (RFC 5321 §4.1.1.1)
        self.sent = 0

    async def open(self) -> None:
        try:
            client = await connect(self.config)
        except RelayError as exc:
            raise ConnectionLost(str(exc)) from None
        self.pipelining = client.supports_extension("pipelining")
        self.smtputf8 = client.supports_extension("smtputf8")
        answer = client.last_ehlo_response or client.last_helo_response
        self.greeting = answer.message if answer is not None else ""
        transport = client.transport
        assert isinstance(transport, asyncio.Transport)
        # aiosmtplib did the handshake, TLS and login; this session's messages go through _Wire.
        client.transport = None
        client.protocol = None
        self.wire = _Wire(transport)
        transport.set_protocol(self.wire)

    async def send(self, message: Outgoing, journal: Journal | None = None) -> RelayAnswer:
        if self.wire is None or self.wire.lost:
            try:
                await self.open()
            except ConnectionLost as exc:
                return RelayAnswer(message.key, UNREACHED, 0, str(exc))
        try:
            wire = self.wire
            assert wire is not None
            timer = asyncio.get_running_loop().call_later(self.timeout, wire.timeout)
            try:
                return await self._transaction(wire, message, journal or NoJournal())
            finally:
                timer.cancel()
        except ConnectionLost as exc:
            self.close()
            return RelayAnswer(message.key, RETRY, 0, str(exc))

    async def _transaction(self, wire: _Wire, message: Outgoing, journal: Journal) -> RelayAnswer:
        utf8 = not message.recipient.isascii()
        if utf8 and not self.smtputf8:
            return RelayAnswer(message.key, UNSENDABLE, 0, no_smtputf8(self.config))
        # RFC 6531 §3.4: SMTPUTF8 on MAIL lets RCPT and the header fields (RFC 6532) carry UTF-8
        option = " SMTPUTF8" if utf8 else ""
        commands = (
            f"MAIL FROM:<{message.sender}>{option}\r\n".encode(),
            f"RCPT TO:<{message.recipient}>\r\n".encode(),
            b"DATA\r\n",
        )
        answers = []
        if self.pipelining:
            wire.write(b"".join(commands))  # RFC 2920: DATA may end a pipelined group
            answers = [await wire.answer() for _ in commands]
        else:
            for command in commands:
                wire.write(command)
                answers.append(await wire.answer())
                if answers[-1][0] >= 400:
                    break
        failed = next(((c, t) for c, t in answers if c >= 400), None)
        if failed is not None or answers[-1][0] != 354:
            code, text = failed or answers[-1]
            await self._reset(wire, code)
            return RelayAnswer(message.key, classify(code, text), code, text)
        journal.handed(message.key)
        wire.write(message.data + b".\r\n")
        code, text = await wire.answer()
        journal.answered(message.key, code)
        self.sent += 1
        if code == 421:
            self.close()
        return RelayAnswer(message.key, classify(code, text), code, text)

    async def _reset(self, wire: _Wire, code: int) -> None:
        if code == 421:  # RFC 5321 §3.8: the server is closing the session
            self.close()
            return
        wire.write(b"RSET\r\n")
        await wire.answer()

    async def quit(self) -> None:
        """Say QUIT, close, and wait until every socket this connection opened is released."""
        if self.wire is not None and not self.wire.lost:
            try:
                self.wire.write(b"QUIT\r\n")
                await asyncio.wait_for(self.wire.answer(), 2)
            except (ConnectionLost, TimeoutError):
                pass
        self.close()
        for wire in self.closing:
            try:
                await asyncio.wait_for(asyncio.shield(wire.closed), 2)
            except TimeoutError:  # the relay never answered our TLS close_notify
                wire.transport.abort()
                await asyncio.sleep(0)  # abort releases the socket on the next turn
        self.closing = []

    def close(self) -> None:
        if self.wire is not None:
            self.wire.transport.close()
            self.closing = [w for w in self.closing if not w.closed.done()] + [self.wire]
            self.wire = None


async def disconnect(client: aiosmtplib.SMTP) -> None:
    """Say QUIT to the relay (when still connected), close, and wait until the socket is
    released: for a session that sends nothing (`newsroom doctor`)."""
    if client.is_connected:
        transport = client.transport
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
        await _released(transport)
    else:
        await _closed(client)


async def _closed(client: aiosmtplib.SMTP) -> None:
    transport = client.transport
    client.close()
    await _released(transport)


async def _released(transport: asyncio.BaseTransport | None, patience: float = 2.0) -> None:
    """Wait until TRANSPORT, closed, has let go of its socket. A transport frees its socket in
    a later turn of the loop (a TLS one only after the close_notify exchange), and a loop that
    ends first leaks it (a ResourceWarning, and an open descriptor). aiosmtplib offers nothing
    to wait on, so this watches the socket; after PATIENCE seconds it aborts."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if transport is None or sock is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    await asyncio.sleep(0)
    while sock.fileno() != -1:
        if loop.time() > deadline:
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            await asyncio.sleep(0)  # abort releases the socket on the next turn
            return
        await asyncio.sleep(0.005)


class Pool:
    """`smtp.connections` connections sending from one stream of messages, within the rate."""

    def __init__(
        self, config: Config, *, connections: int | None = None, limiter: Limiter | None = None
    ) -> None:
        self.config = config
        self.size = connections or config.integer("smtp.connections")
        self.limiter: Limiter = limiter or RateLimiter.from_config(config)
        self.connections = [Connection(config) for _ in range(self.size)]
        self.stopping = False
        self.down = ""  # why the relay could not be reached, once a connection could not open
        self.journal: Journal = NoJournal()

    async def check(self) -> str:
        """Preflight: one connection opens (raises RelayError saying why when it cannot);
        returns the relay's EHLO answer, which names it (readiness.is_dev_smtp). A connection
        already open is kept and asked no more."""
        first = self.connections[0]
        try:
            if first.wire is None or first.wire.lost:
                await first.open()
        except ConnectionLost as exc:
            raise RelayError(str(exc)) from None
        return first.greeting

    async def send_all(
        self,
        messages: Iterator[Outgoing],
        on_outcome: Callable[[RelayAnswer], Any],
        ready: Callable[[Outgoing], bool] = lambda _message: True,
    ) -> None:
        """Send MESSAGES over every connection until they run out or `stop()` is called;
        ON_OUTCOME hears about each message taken. Messages not taken stay in the iterator.
        READY has the last word on each message, right before it goes: False drops it.
        When a connection cannot be opened the relay is down (`down` says why): that message
        is UNREACHED and the pool takes no more, so only the messages in flight are lost with
        it instead of the whole stream. An error raised by a callback stops the pool too, and
        is raised once the messages in flight on the other connections are answered."""
        self.down = ""
        work = (self._work(c, messages, on_outcome, ready) for c in self.connections)
        results = await asyncio.gather(*work, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _work(
        self,
        connection: Connection,
        messages: Iterator[Outgoing],
        on_outcome: Callable[[RelayAnswer], Any],
        ready: Callable[[Outgoing], bool],
    ) -> None:
        try:
            await self._drive(connection, messages, on_outcome, ready)
        except BaseException:
            self.stop()  # the other connections finish what they hold, and take no more
            raise

    async def _drive(
        self,
        connection: Connection,
        messages: Iterator[Outgoing],
        on_outcome: Callable[[RelayAnswer], Any],
        ready: Callable[[Outgoing], bool],
    ) -> None:
        while not self.stopping:
            message = next(messages, None)
            if message is None:
                return
            await self.limiter.wait(message.recipient)
            if self.stopping:
                return  # taken but not sent: the caller finds no outcome and puts it back
            if not ready(message):
                continue  # dropped by the caller at the last moment (an unsubscribe)
            outcome = await connection.send(message, self.journal)
            if outcome.kind == UNREACHED:
                self.down = self.down or outcome.text
                self.stop()
            on_outcome(outcome)
            if outcome.kind in (RETRY, UNREACHED) and outcome.code == 0:
                await asyncio.sleep(0.2)  # a dropped or unreachable relay: do not spin

    def stop(self) -> None:
        """Finish the messages in flight, take no more."""
        self.stopping = True

    async def close(self) -> None:
        await asyncio.gather(*(c.quit() for c in self.connections))
        self.limiter.close()
