"""VERP envelope senders name one delivery and cannot be forged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsroom import settings
from newsroom.mail import verp
from newsroom.settings import Config


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "newsroom.toml").write_text(
        '[sending]\nbounce_address = "bounces@news.example.org"\n'
    )
    return settings.load(tmp_path, {"NEWSROOM_SECRET_KEY": "k1"})


def test_round_trip_and_length(config: Config) -> None:
    address = verp.envelope_sender(config, 123456789)
    local = address.split("@")[0]
    assert address.startswith("bounces+123456789-") and address.endswith("@news.example.org")
    assert len(local) <= 64  # RFC 5321 4.5.3.1.1
    assert verp.delivery_id(config, address) == 123456789
    assert verp.delivery_id(config, f"<{address.upper()}>") == 123456789  # relays may fold case


def test_forged_or_foreign_addresses_name_nothing(config: Config) -> None:
    address = verp.envelope_sender(config, 42)
    assert verp.delivery_id(config, address.replace("+42-", "+43-")) is None
    assert verp.delivery_id(config, address.replace("@news.", "@evil.")) is None
    assert verp.delivery_id(config, "bounces@news.example.org") is None
    assert verp.delivery_id(config, "someone@example.com") is None


def test_old_keys_still_verify_after_rotation(config: Config, tmp_path: Path) -> None:
    address = verp.envelope_sender(config, 7)
    rotated = settings.load(
        tmp_path, {"NEWSROOM_SECRET_KEY": "k2", "NEWSROOM_SECRET_OLD_KEYS": "k1"}
    )
    assert verp.delivery_id(rotated, address) == 7
    fresh = settings.load(tmp_path, {"NEWSROOM_SECRET_KEY": "k2"})
    assert verp.delivery_id(fresh, address) is None


def test_a_confirmations_address_names_its_subscriber_row(config: Config) -> None:
    """`bounces+c<subscriber>-<tag>@`: the tag binds the id to the row's token key, so the same
    id with another key (an erased row's id given again) does not match."""
    address = verp.confirmation_sender(config, 123456789, "row-key")
    assert re.fullmatch(r"bounces\+c123456789-[0-9a-f]{16}@news\.example\.org", address)
    assert len(address.split("@")[0]) <= 64  # RFC 5321 4.5.3.1.1
    claim = verp.confirmation_claim(config, f"<{address.upper()}>")
    assert claim is not None and claim[0] == 123456789
    assert verp.confirmation_genuine(config, 123456789, "row-key", claim[1])
    assert not verp.confirmation_genuine(config, 123456789, "another-key", claim[1])
    assert not verp.confirmation_genuine(config, 123456788, "row-key", claim[1])
    assert verp.delivery_id(config, address) is None  # not a delivery's
    assert verp.confirmation_claim(config, verp.envelope_sender(config, 5)) is None
    assert verp.confirmation_claim(config, address.replace("@news.", "@evil.")) is None


def test_a_test_copys_address_is_ours_and_names_no_delivery(config: Config, tmp_path: Path) -> None:
    address = verp.sender_for_test_copy(config)
    assert re.fullmatch(r"bounces\+test-[0-9a-f]{16}@news\.example\.org", address)
    assert verp.is_test_copy(config, address.upper())
    assert verp.delivery_id(config, address) is None
    assert verp.confirmation_claim(config, address) is None
    assert not verp.is_test_copy(config, address.replace(address[13:29], "0" * 16))
    assert not verp.is_test_copy(config, "bounces@news.example.org")
    rotated = settings.load(
        tmp_path, {"NEWSROOM_SECRET_KEY": "k2", "NEWSROOM_SECRET_OLD_KEYS": "k1"}
    )
    assert verp.is_test_copy(rotated, address)  # an old copy's bounce, after a key rotation
