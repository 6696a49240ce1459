"""Signed, purpose-bound tokens for links and envelope addresses (confirm, unsubscribe, ...).

A token is `KID.PAYLOAD.SIGNATURE`, URL-safe. KID names the secret key that signed it, so keys can
be rotated: only the current key (`secret.key`) signs, earlier keys (`secret.old_keys`) still
verify. The purpose is the itsdangerous salt, so a token made for one purpose never verifies for
another. Tokens that act on a subscriber (`for_subscriber`) carry its id and a digest of its
address and its token key, a random value of the subscriber's row: erasure deletes the row, so a
token made before never works again, even when SQLite gives the id to someone new or the same
address subscribes again. The expiry travels in the payload and is checked against `now`, which
callers pass in. Only the one canonical spelling of a token is accepted (`_canonical`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadData, BadSignature, URLSafeSerializer
from itsdangerous.encoding import base64_decode, base64_encode

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
    """The digest that tokens made before migration 0002 carry: of the address alone. It is
    honoured only for subscribers who were already there then (`Subscriber.old_links`)."""
    return hashlib.sha256(email.lower().encode()).hexdigest()[:12]


def subscriber_digest(email: str, token_key: str) -> str:
    """A short digest binding a token to one subscriber row: its address and its token key."""
    return hashlib.sha256(f"{token_key}:{email.lower()}".encode()).hexdigest()[:12]


def for_subscriber(subscriber_id: int, email: str, token_key: str) -> dict[str, Any]:
    """The payload naming one subscriber, for every token that acts on one."""
    return {"s": subscriber_id, "a": subscriber_digest(email, token_key)}


def names(payload: Mapping[str, Any], email: str, token_key: str, old_links: bool) -> bool:
    """Whether PAYLOAD (already found to carry that subscriber's id) was made for this very row:
    its token key, or for a row from before migration 0002 (OLD_LINKS), its address alone."""
    digest = payload.get("a")
    if digest == subscriber_digest(email, token_key):
        return True
    return old_links and digest == address_digest(email)


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
    if not dot or key is None or not _canonical(body):
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


def _canonical(body: str) -> bool:
    """Whether BODY (`PAYLOAD.SIGNATURE`, the payload after a '.' when compressed) is spelled
    as make() spells it. itsdangerous decodes leniently — it drops non-ASCII characters, pads,
    and ignores a last character's spare bits — so one signature has many spellings; a token
    is a capability, and each one has exactly one (each part re-encoded must give itself)."""
    parts = body.removeprefix(".").split(".")
    return len(parts) == 2 and all(_canonical_part(part) for part in parts)


def _canonical_part(part: str) -> bool:
    if not part.isascii():
        return False
    try:
        return base64_encode(base64_decode(part)).decode() == part
    except BadData:
        return False


def links(
    config: Config,
    person: Mapping[str, Any],
    *,
    now: datetime,
    leaving: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """The unsubscribe and preferences links of one message to PERSON (`for_subscriber`): the
    one place they are made, for a mailing's messages, `send --test` and `preview --as`.
    LEAVING is what the unsubscribe link names besides the person (the lists it leaves, the
    mailing: sending.py). Neither expires: a link in an old email must keep working (RFC 8058)."""
    base = config.text("site.base_url").rstrip("/")
    unsubscribe = make(config, "unsubscribe", {**person, **(leaving or {})}, now=now)
    preferences = make(config, "preferences", dict(person), now=now)
    return f"{base}/unsubscribe/{unsubscribe}", f"{base}/preferences/{preferences}"
