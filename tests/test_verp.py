"""VERP envelope senders name one delivery and cannot be forged."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsroom import settings
from newsroom.delivery import verp
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
