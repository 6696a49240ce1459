"""Suppressions: keyed hashes of erased addresses, so an import or an admin cannot re-add them.

The hash is an HMAC keyed with a value derived from the secret key, not a salt stored beside it:
someone holding a copy of the database alone cannot test guessed addresses against it. Every key
that still verifies tokens (`secret.key` and `secret.old_keys`) is checked, so rotating the key
keeps the suppressions as long as the old key is listed in NEWSROOM_SECRET_OLD_KEYS.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsroom import tokens
from newsroom.models import Suppression
from newsroom.settings import Config


def digest(key: str, email: str) -> str:
    pepper = hashlib.sha256(b"newsroom-suppression:" + key.encode()).digest()
    return hmac.new(pepper, email.lower().encode(), hashlib.sha256).hexdigest()


def digests(config: Config, email: str) -> list[str]:
    """The address's hash under every key still accepted, the current key's first."""
    return [digest(key, email) for key in tokens.keys(config).values()]


def is_suppressed(session: Session, config: Config, email: str) -> bool:
    query = select(Suppression.sha256).where(Suppression.sha256.in_(digests(config, email)))
    return session.scalar(query.limit(1)) is not None


def suppressed_among(session: Session, config: Config, emails: list[str]) -> set[str]:
    """Which of EMAILS are suppressed (one query for a batch of an import)."""
    by_digest = {d: email for email in emails for d in digests(config, email)}
    if not by_digest:
        return set()
    found = session.scalars(select(Suppression.sha256).where(Suppression.sha256.in_(by_digest)))
    return {by_digest[d] for d in found}


def add(session: Session, config: Config, email: str, reason: str, now: datetime) -> None:
    if not is_suppressed(session, config, email):
        session.add(Suppression(sha256=digests(config, email)[0], reason=reason, at=now))


def lift(session: Session, config: Config, email: str) -> None:
    """The person confirmed a new subscription themselves: the suppression has done its job."""
    session.execute(delete(Suppression).where(Suppression.sha256.in_(digests(config, email))))
