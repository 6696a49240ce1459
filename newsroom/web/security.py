"""The web side's guards: security headers, the subscribe form's CSRF token and rate limit, and
keeping link tokens out of access logs."""

from __future__ import annotations

import hmac
import logging
import math
import re
import secrets
from collections import OrderedDict, deque
from datetime import datetime, timedelta

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsroom import tokens
from newsroom.errors import ConfigError
from newsroom.settings import Config, parse_rate

# No inline script or style anywhere: pages load one stylesheet from the site itself.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; "
    "form-action 'self'; base-uri 'none'"
)
CSP_HEADER = CSP + "; frame-ancestors 'none'"  # frame-ancestors is ignored in a <meta> tag
TOKEN_ROUTES = ("/confirm/", "/unsubscribe/", "/preferences/")
MAX_BODY = 64 * 1024  # no form of ours needs more


def _spelled(word: str) -> str:
    """A pattern for WORD as a request line may spell it: in any case (with IGNORECASE), any of
    its characters percent-encoded (RFC 3986 section 2.1), once or more (%2575 is a logged %75)."""
    return "".join(
        f"(?:{re.escape(c)}|%(?:25)*(?:{ord(c):02x}|{ord(c.upper()):02x}))" for c in word
    )


_SLASH = _spelled("/")
# A token is redacted however the path spells its route (/UNSUBSCRIBE/, /%75nsubscribe/,
# /confirm%2F...): a request that our case-sensitive routes do not match still logs its path,
# and the token in it is still good for the route it was made for.
TOKEN_IN_PATH = re.compile(
    f"({_SLASH}(?:{'|'.join(_spelled(r) for r in ('confirm', 'unsubscribe', 'preferences'))})"
    f'{_SLASH})(?:[^/?#%\\s"]|%(?!(?:25)*2f))+',
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """TEXT with every link token replaced: tokens are capabilities and never belong in a log."""
    return TOKEN_IN_PATH.sub(r"\1[token]", text)


class RedactTokens(logging.Filter):
    """A filter for uvicorn's access log, whose record args are (client, method, path, ...):
    link tokens become [token], and the client's address is left out — who reads a Disability
    Group's archive is nobody's business, and the rate limit and the ledger need no log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            rest = record.args[1:]  # the first is the client's address
            record.args = ("-", *(redact(a) if isinstance(a, str) else a for a in rest))
        record.msg = redact(str(record.msg))
        return True


def redact_access_log() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


class BodyTooLarge(Exception):
    """More than MAX_BODY bytes read from a request (not an HTTPException: the form parser's
    callers turn those into an empty form, and this must reach the middleware)."""


class SecurityHeaders:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): adds the security
    headers to every answer, keeps token pages out of caches and referrers, and refuses bodies
    larger than any form of ours."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY:
            await _too_large(send)
            return
        token_page = str(scope["path"]).startswith(TOKEN_ROUTES)
        started = False
        read = 0

        async def receive_at_most() -> Message:
            # A chunked body (RFC 9112 section 7.1) announces no length: the limit holds on
            # the bytes actually read, before a handler can gather them all in memory.
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > MAX_BODY:
                raise BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP_HEADER)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                if token_page:
                    headers["Cache-Control"] = "no-store"
                    headers["X-Robots-Tag"] = "noindex, nofollow"
            await send(message)

        try:
            await self.app(scope, receive_at_most, send_with_headers)
        except BodyTooLarge:
            if started:  # no handler of ours answers before reading its body
                raise
            await _too_large(send)


async def _too_large(send: Send) -> None:
    body = b"Request body too large.\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        # The rest of the body is not read: the connection is closed rather than drained.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ClientLimit:
    """At most N requests per window per client (a sliding window of times). Memory is bounded:
    past MAX_CLIENTS the client seen least recently is forgotten."""

    MAX_CLIENTS = 10_000

    def __init__(self, rate: str, where: str = "web.subscribe_rate") -> None:
        parsed = parse_rate(rate)
        if parsed is None:
            raise ConfigError(f"{where}: {rate!r} must look like 10/hour (a number above 0)")
        self.limit, self.window = parsed
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str, now: float) -> bool:
        times = self.seen.pop(client, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        allowed = len(times) < self.limit
        if allowed:
            times.append(now)
        self.seen[client] = times
        while len(self.seen) > self.MAX_CLIENTS:
            self.seen.popitem(last=False)
        return allowed

    def retry_after(self, client: str, now: float) -> int:
        times = self.seen.get(client)
        return max(1, math.ceil(times[0] + self.window - now)) if times else 1


class FormGuard:
    """Signed double-submit CSRF protection without JavaScript: a random value in a cookie, and
    a signed token of that value (purpose "form") in a hidden field. Another site can make a
    browser post the form but can neither read the cookie nor sign a token for it."""

    COOKIE = "newsroom_form"
    FIELD = "form_token"
    TTL = timedelta(hours=12)

    def __init__(self, config: Config) -> None:
        self.config = config
        self.secure = config.text("site.base_url").startswith("https://")

    @staticmethod
    def cookie_value(existing: str | None) -> str:
        if existing and re.fullmatch(r"[A-Za-z0-9_-]{20,64}", existing):
            return existing
        return secrets.token_urlsafe(18)

    def field(self, cookie: str, now: datetime) -> str:
        return tokens.make(self.config, "form", {"c": cookie}, now=now, ttl=self.TTL)

    def check(self, cookie: str | None, field: object, now: datetime) -> bool:
        if not cookie or not isinstance(field, str):
            return False
        try:
            payload = tokens.read(self.config, "form", field, now=now)
        except tokens.TokenError:
            return False
        return hmac.compare_digest(str(payload.get("c", "")), cookie)
