"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port) that can be told to fail.

server.fail("RCPT", 550, "5.1.1 No such user", match="gone@")   # answer a command with a code
server.fail("DATA", 451, "4.3.0 Try later", times=1)           # ... only once
server.drop("MAIL")                                            # close the connection instead
server.stall("DATA", 5.0)                                      # wait before answering
TestSMTPServer(smtputf8=False)                                 # a relay without RFC 6531

TestSMTPServer(tls_context=context)            # offers STARTTLS (RFC 3207) with that certificate
TestSMTPServer(tls_context=context, implicit_tls=True)  # TLS from the first byte (RFC 8314 §3)
TestSMTPServer(accounts={"news": "s3cret"})    # offers AUTH (RFC 4954), accepts only these logins
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)  # MAIL FROM parameters (SMTPUTF8)
    arrived: float = 0.0  # time.monotonic() when its data was taken (the rate tests' stamps)

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def raw_header(self, name: bytes) -> bytes:
        """The bytes of header field NAME as they arrived, folding and final CRLF included."""
        head = b"\r\n" + self.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        start = end = head.index(b"\r\n" + name + b": ") + 2
        while True:
            end = head.index(b"\r\n", end) + 2
            if head[end : end + 1] not in (b" ", b"\t"):
                return head[start:end]

    def body(self, kind: str = "plain") -> str:
        """The text of the message's text/KIND part (plain or html)."""
        part = self.message.get_body((kind,))
        assert part is not None, f"the message has no text/{kind} part"
        return str(part.get_content())


@dataclass
class Rule:
    command: str
    action: str  # "fail", "drop" or "stall"
    code: int = 0
    text: str = ""
    match: str = ""  # only when the command's argument (address) contains this
    times: int | None = None  # None: always
    seconds: float = 0.0


@dataclass
class TestSMTPServer:
    __test__ = False  # a fixture, not a test class

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    connections: int = 0
    pipelining: bool = True  # advertise RFC 2920 PIPELINING in the EHLO answer
    smtputf8: bool = True  # advertise RFC 6531 SMTPUTF8 (and take UTF-8 addresses)
    hostname: str = "test-smtp.localhost"  # the name it greets with
    tls_context: ssl.SSLContext | None = None  # offer STARTTLS with this certificate
    implicit_tls: bool = False  # ... or speak TLS with it from the first byte
    accounts: dict[str, str] = field(default_factory=dict)  # offer AUTH; these logins succeed
    logins: list[tuple[str, str]] = field(default_factory=list)  # every login tried
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    # --- telling it to fail -------------------------------------------------------------
    def fail(
        self, command: str, code: int, text: str, match: str = "", times: int | None = None
    ) -> None:
        self.rules.append(Rule(command.upper(), "fail", code, text, match, times))

    def drop(self, command: str, match: str = "", times: int | None = None) -> None:
        self.rules.append(Rule(command.upper(), "drop", match=match, times=times))

    def stall(
        self, command: str, seconds: float, match: str = "", times: int | None = None
    ) -> None:
        self.rules.append(Rule(command.upper(), "stall", match=match, times=times, seconds=seconds))

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.commands.clear()
            self.rules.clear()

    # --- reading what arrived -----------------------------------------------------------
    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def wait_for(self, address: str, timeout: float = 10.0) -> list[Received]:
        """The messages to ADDRESS once there are any, polled until TIMEOUT (a real server
        sends some mail after its answer, as the web side's subscribe does)."""
        deadline = time.monotonic() + timeout
        while not (found := self.to(address)):
            assert time.monotonic() < deadline, f"no message to {address} within {timeout} s"
            time.sleep(0.02)
        return found

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> TestSMTPServer:
        self.port = self.port or free_port()
        handler = _Handler(self)
        self._controller = _Controller(
            self,
            handler,
            hostname=self.host,
            port=self.port,
            ssl_context=self.tls_context if self.implicit_tls else None,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def _apply(self, command: str, argument: str, server: SMTP) -> str | None:
        """The answer a rule gives to this command, or None to carry on normally."""
        with self._lock:
            self.commands.append(f"{command} {argument}".strip())
            rule = next(
                (
                    r
                    for r in self.rules
                    if r.command == command and r.match in argument and r.times != 0
                ),
                None,
            )
            if rule is not None and rule.times is not None:
                rule.times -= 1
        if rule is None:
            return None
        if rule.action == "stall":
            await asyncio.sleep(rule.seconds)
            return None
        if rule.action == "drop":
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 Connection dropped by test"
        return f"{rule.code} {rule.text}"


class _Handler:
    def __init__(self, owner: TestSMTPServer) -> None:
        self.owner = owner

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.owner.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = await self.owner._apply("MAIL", address, server)
        if answer:
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = await self.owner._apply("RCPT", address, server)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await self.owner._apply("DATA", " ".join(envelope.rcpt_tos), server)
        if answer:
            return answer
        content = envelope.original_content or b""
        with self.owner._lock:
            self.owner.messages.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    content,
                    list(envelope.mail_options),
                    time.monotonic(),
                )
            )
        return "250 OK queued"


class _Controller(Controller):
    def __init__(self, owner: TestSMTPServer, handler: Any, **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        owner = self.owner
        owner.connections += 1
        return SMTP(
            self.handler,
            hostname=owner.hostname,
            decode_data=False,
            enable_SMTPUTF8=owner.smtputf8,
            tls_context=None if owner.implicit_tls else owner.tls_context,
            authenticator=self._authenticate if owner.accounts else None,
            # AUTH without TLS only where the test asks for logins and no TLS (on loopback)
            auth_require_tls=not owner.accounts or owner.tls_context is not None,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (data.login.decode(), data.password.decode())
        with self.owner._lock:
            self.owner.logins.append(login)
        # handled=False: aiosmtpd answers a failure itself (535) only when told it must
        return AuthResult(success=self.owner.accounts.get(login[0]) == login[1], handled=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
