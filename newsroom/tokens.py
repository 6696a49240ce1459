"""Signed, purpose-bound tokens for links and envelope addresses (confirm, unsubscribe, ...).

A token is `KID.PAYLOAD.SIGNATURE`, URL-safe. KID names the secret key that signed it, so keys can
be rotated: only the current key (`secret.key`) signs, earlier keys (`secret.old_keys`) still
verify. The purpose is the itsdangerous salt, so a token made for one purpose never verifies for
another. Tokens that act on an address carry a digest of it (`address_digest`), so a token cannot
be replayed against another address even if a subscriber id were reused. The expiry travels in
the payload and is checked against `now`, which callers pass in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from newsroom.errors import NewsroomError
from newsroom.settings import Config

PURPOSES = ("confirm", "unsubscribe", "preferences", "verp", "form")  # form: CSRF of web forms
MAX_TOKEN_LENGTH = 2000


class TokenError(NewsroomError):
    """A token that is forged, damaged, or made for another purpose."""


class TokenExpired(TokenError):
    """A genuine token whose time is up; `payload` says what it was for (to offer a new one)."""

    def __init__(self, message: str, payload: dict[str, Any]) -> None:
        super().__init__(message)
        self.payload = payload


def key_id(key: str) -> str:
    """A short public name for a key (not secret: a digest prefix of it)."""
    return hashlib.sha256(b"newsroom-key-id:" + key.encode()).hexdigest()[:6]


def keys(config: Config) -> dict[str, str]:
    """Every key that may verify, by key id; the current key first."""
    found = {key_id(config.secret_key): config.secret_key}
    for old in config.text("secret.old_keys").split():
        found.setdefault(key_id(old), old)
    return found


def address_digest(email: str) -> str:
    """A short digest binding a token to one address (inside the signed payload)."""
    return hashlib.sha256(email.lower().encode()).hexdigest()[:12]


def _serializer(key: str, purpose: str) -> URLSafeSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    return URLSafeSerializer(key, salt=f"newsroom.{purpose}")


def make(
    config: Config,
    purpose: str,
    payload: Mapping[str, Any],
    *,
    now: datetime,
    ttl: timedelta | None = None,
) -> str:
    """A token for PURPOSE carrying PAYLOAD (short JSON keys); valid for TTL after NOW if given."""
    data = dict(payload)
    if ttl is not None:
        data["x"] = int((now + ttl).timestamp())
    key = config.secret_key
    body = _serializer(key, purpose).dumps(data)
    assert isinstance(body, str)
    return f"{key_id(key)}.{body}"


def read(
    config: Config, purpose: str, token: str, *, now: datetime, allow_expired: bool = False
) -> dict[str, Any]:
    """The payload of TOKEN if it is genuine, made for PURPOSE and (unless allowed) not expired.

    Raises TokenError for anything forged, damaged or of another purpose, and TokenExpired
    (carrying the payload) for a genuine token past its expiry.
    """
    invalid = TokenError(f"this {purpose} link is not valid: it may be incomplete or altered")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise invalid
    kid, dot, body = token.partition(".")
    key = keys(config).get(kid)
    if not dot or key is None:
        raise invalid
    try:
        payload = _serializer(key, purpose).loads(body)
    except BadSignature:
        raise invalid from None
    if not isinstance(payload, dict):
        raise invalid
    expires = payload.get("x")
    if expires is not None and now.timestamp() > expires and not allow_expired:
        raise TokenExpired(f"this {purpose} link has expired", payload)
    return payload
