"""VERP envelope senders: `bounces+<delivery>-<mac>@domain` names one delivery, unforgeably.

A bounce comes back to the envelope sender (RFC 5321 §4.5.5), so putting the delivery id in it
tells us which message bounced without trusting any address in the report body. The tag is a
truncated HMAC in lower-case hex rather than an itsdangerous token because local parts are at
most 64 octets (RFC 5321 §4.5.3.1.1) and some relays fold their case.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from newsroom import tokens
from newsroom.settings import Config

TAG_LENGTH = 16  # hex digits: 64 bits, ample against guessing
# The subject of the List-Unsubscribe mailto URL (RFC 2369 §2, RFC 6068 hfields): mail clients
# and providers send it as written, and bounce processing knows an unsubscribe request by it.
UNSUBSCRIBE_SUBJECT = "unsubscribe"


def _tag(key: str, delivery_id: int) -> str:
    digest = hmac.new(key.encode(), f"verp:{delivery_id}".encode(), hashlib.sha256).hexdigest()
    return digest[:TAG_LENGTH]


def envelope_sender(config: Config, delivery_id: int) -> str:
    """The per-delivery envelope sender built on `sending.bounce_address`."""
    local, _, domain = config.text("sending.bounce_address").rpartition("@")
    return f"{local}+{delivery_id}-{_tag(config.secret_key, delivery_id)}@{domain}"


def delivery_id(config: Config, address: str) -> int | None:
    """The delivery an envelope address names, or None when it is not one of ours or is forged."""
    local, _, domain = config.text("sending.bounce_address").rpartition("@")
    match = re.fullmatch(
        rf"{re.escape(local)}\+(\d{{1,18}})-([0-9a-f]{{{TAG_LENGTH}}})@{re.escape(domain)}",
        address.strip().strip("<>").lower(),
        flags=re.IGNORECASE,
    )
    if match is None:
        return None
    number, tag = int(match.group(1)), match.group(2).lower()
    if any(hmac.compare_digest(tag, _tag(key, number)) for key in tokens.keys(config).values()):
        return number
    return None
