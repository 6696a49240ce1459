"""VERP envelope senders: `bounces+<delivery>-<mac>@domain` names one delivery, unforgeably.

Single messages have forms of their own: `bounces+c<subscriber>-<mac>@domain` for a
confirmation email, its MAC bound to the subscriber's token key as well as its id (so an
erased-and-reused id names nobody), and `bounces+test-<mac>@domain` for a `--test` copy, which
belongs to no delivery: its bounces are recognised, and change nothing.

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
_TAG = rf"([0-9a-f]{{{TAG_LENGTH}}})"
# The subject of the List-Unsubscribe mailto URL (RFC 2369 §2, RFC 6068 hfields): mail clients
# and providers send it as written, and bounce processing knows an unsubscribe request by it.
UNSUBSCRIBE_SUBJECT = "unsubscribe"


def _tag(key: str, subject: str) -> str:
    digest = hmac.new(key.encode(), subject.encode(), hashlib.sha256).hexdigest()
    return digest[:TAG_LENGTH]


def _genuine(config: Config, tag: str, subject: str) -> bool:
    """Whether TAG is SUBJECT's under the current key or an old one (rotation)."""
    keys = tokens.keys(config).values()
    return any(hmac.compare_digest(tag, _tag(key, subject)) for key in keys)


def _address(config: Config, middle: str) -> str:
    local, _, domain = config.text("sending.bounce_address").rpartition("@")
    return f"{local}+{middle}@{domain}"


def _match(config: Config, middle: str, address: str) -> re.Match[str] | None:
    """ADDRESS matched against `sending.bounce_address` with the pattern MIDDLE after its `+`
    (case-insensitively: relays may fold the case of a local part)."""
    local, _, domain = config.text("sending.bounce_address").rpartition("@")
    return re.fullmatch(
        rf"{re.escape(local)}\+{middle}@{re.escape(domain)}",
        address.strip().strip("<>").lower(),
        flags=re.IGNORECASE,
    )


def envelope_sender(config: Config, delivery_id: int) -> str:
    """The per-delivery envelope sender built on `sending.bounce_address`."""
    return _address(config, f"{delivery_id}-{_tag(config.secret_key, f'verp:{delivery_id}')}")


def delivery_id(config: Config, address: str) -> int | None:
    """The delivery an envelope address names, or None when it is not one of ours or is forged."""
    match = _match(config, rf"(\d{{1,18}})-{_TAG}", address)
    if match is None:
        return None
    number = int(match.group(1))
    return number if _genuine(config, match.group(2), f"verp:{number}") else None


def _confirmation_subject(subscriber_id: int, token_key: str) -> str:
    return f"verp-confirm:{subscriber_id}:{token_key}"


def confirmation_sender(config: Config, subscriber_id: int, token_key: str) -> str:
    """The envelope sender of a confirmation email to one subscriber row."""
    tag = _tag(config.secret_key, _confirmation_subject(subscriber_id, token_key))
    return _address(config, f"c{subscriber_id}-{tag}")


def confirmation_claim(config: Config, address: str) -> tuple[int, str] | None:
    """The subscriber id and tag an address in the confirmation form carries, or None. Not yet
    proof: the tag is checked with `confirmation_genuine` against that row's token key, which
    only the database knows."""
    match = _match(config, rf"c(\d{{1,18}})-{_TAG}", address)
    return (int(match.group(1)), match.group(2)) if match else None


def confirmation_genuine(config: Config, subscriber_id: int, token_key: str, tag: str) -> bool:
    return _genuine(config, tag, _confirmation_subject(subscriber_id, token_key))


def sender_for_test_copy(config: Config) -> str:
    """The envelope sender of a `--test` copy: ours, and naming no delivery."""
    return _address(config, f"test-{_tag(config.secret_key, 'verp-test')}")


def is_test_copy(config: Config, address: str) -> bool:
    match = _match(config, f"test-{_TAG}", address)
    return match is not None and _genuine(config, match.group(1), "verp-test")
