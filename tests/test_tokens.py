"""Signed tokens: purpose-bound, tamper-proof, expiring, and surviving a key rotation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode

from newsroom import settings, tokens
from newsroom.errors import ConfigError
from newsroom.mail import verp

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data" / "tokens"


def config(tmp_path: Path, key: str = "key-one", old: str = "") -> settings.Config:
    (tmp_path / "newsroom.toml").write_text("", encoding="utf-8")
    env = {"NEWSROOM_SECRET_KEY": key, "NEWSROOM_SECRET_OLD_KEYS": old}
    return settings.load(tmp_path, env)


def test_round_trip_is_short_and_url_safe(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    token = tokens.make(cfg, "confirm", {"s": 42, "l": [1, 2]}, now=NOW, ttl=timedelta(hours=72))
    assert len(token) < 100
    assert all(c.isalnum() or c in "-_." for c in token)
    payload = tokens.read(cfg, "confirm", token, now=NOW + timedelta(hours=71))
    assert payload["s"] == 42 and payload["l"] == [1, 2]


def test_a_token_for_one_purpose_fails_for_another(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    token = tokens.make(cfg, "unsubscribe", {"s": 1}, now=NOW)
    with pytest.raises(tokens.TokenError, match="not valid"):
        tokens.read(cfg, "confirm", token, now=NOW)


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t[: len(t) // 2],
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],  # signature tampered
        lambda t: t.replace(".", ".x", 1),  # payload tampered
        lambda t: "zzzzzz" + t[6:],  # unknown key id
        lambda t: "",
        lambda t: "no-dots-at-all",
        lambda t: t + "." + "A" * 3000,  # absurdly long
    ],
)
def test_damaged_tokens_are_refused(tmp_path: Path, damage: object) -> None:
    cfg = config(tmp_path)
    token = tokens.make(cfg, "confirm", {"s": 7}, now=NOW)
    assert callable(damage)
    with pytest.raises(tokens.TokenError):
        tokens.read(cfg, "confirm", damage(token), now=NOW)


def test_a_forged_payload_with_another_key_is_refused(tmp_path: Path) -> None:
    forged = tokens.make(config(tmp_path, key="attacker"), "confirm", {"s": 1}, now=NOW)
    # the attacker even copies our key id
    ours = config(tmp_path, key="key-one")
    kid = tokens.key_id("key-one")
    with pytest.raises(tokens.TokenError):
        tokens.read(ours, "confirm", kid + forged[6:], now=NOW)


def test_expired_tokens_say_so_and_carry_their_payload(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    token = tokens.make(cfg, "confirm", {"s": 9}, now=NOW, ttl=timedelta(hours=72))
    with pytest.raises(tokens.TokenExpired, match="expired") as caught:
        tokens.read(cfg, "confirm", token, now=NOW + timedelta(hours=72, seconds=1))
    assert caught.value.payload["s"] == 9
    assert tokens.read(cfg, "confirm", token, now=NOW + timedelta(days=9), allow_expired=True)


def test_old_keys_verify_but_only_the_current_key_signs(tmp_path: Path) -> None:
    before = config(tmp_path, key="key-one")
    token = tokens.make(before, "unsubscribe", {"s": 3}, now=NOW)
    rotated = config(tmp_path, key="key-two", old="key-zero key-one")
    assert tokens.read(rotated, "unsubscribe", token, now=NOW) == {"s": 3}
    fresh = tokens.make(rotated, "unsubscribe", {"s": 3}, now=NOW)
    assert fresh.startswith(tokens.key_id("key-two") + ".")
    dropped = config(tmp_path, key="key-two")
    with pytest.raises(tokens.TokenError):
        tokens.read(dropped, "unsubscribe", token, now=NOW)


def test_no_secret_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NEWSROOM_SECRET_KEY"):
        tokens.make(config(tmp_path, key=""), "confirm", {}, now=NOW)


def test_unknown_purpose_is_a_bug_not_a_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown token purpose"):
        tokens.make(config(tmp_path), "login", {}, now=NOW)


def respellings(token: str) -> dict[str, str]:
    """Other spellings of TOKEN that itsdangerous's lenient base64 decodes to the same bytes."""
    kid, payload, signature = token.split(".")
    spare_bits = next(
        signature[:-1] + c
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        if c != signature[-1] and base64_decode(signature[:-1] + c) == base64_decode(signature)
    )
    return {
        "non-ASCII in the signature": f"{kid}.{payload}.{signature[:5]}é{signature[5:]}",
        "non-ASCII at the end": f"{token}ü",
        "padding": f"{token}=",
        "spare bits of the last character": f"{kid}.{payload}.{spare_bits}",
        "non-ASCII in the payload": f"{kid}.{payload[:3]}\u00a0{payload[3:]}.{signature}",
    }


@pytest.mark.parametrize(
    "how",
    [
        "non-ASCII in the signature",
        "non-ASCII at the end",
        "padding",
        "spare bits of the last character",
        "non-ASCII in the payload",
    ],
)
def test_only_the_canonical_spelling_of_a_token_is_accepted(tmp_path: Path, how: str) -> None:
    """A token is a capability: each has one spelling, so no variant can slip past a check
    made on the string (a log filter, a list of used tokens) and still work."""
    cfg = config(tmp_path)
    token = tokens.make(cfg, "unsubscribe", {"s": 7}, now=NOW)
    other = respellings(token)[how]
    assert other != token
    key = tokens.keys(cfg)[token.split(".")[0]]
    lenient = URLSafeSerializer(key, salt="newsroom.unsubscribe")
    if "payload" not in how:  # the payload is signed as written; the signature is not
        assert lenient.loads(other.split(".", 1)[1]) == {"s": 7}  # what used to get through
    with pytest.raises(tokens.TokenError, match="not valid"):
        tokens.read(cfg, "unsubscribe", other, now=NOW)
    assert tokens.read(cfg, "unsubscribe", token, now=NOW) == {"s": 7}


def test_a_compressed_payload_is_canonical_too(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    payload = {"s": 7, "l": list(range(60))}  # long enough for itsdangerous to compress it
    token = tokens.make(cfg, "unsubscribe", payload, now=NOW)
    assert token.split(".", 1)[1].startswith(".")
    assert tokens.read(cfg, "unsubscribe", token, now=NOW) == payload
    with pytest.raises(tokens.TokenError):
        tokens.read(cfg, "unsubscribe", token + "=", now=NOW)


def test_a_subscriber_token_names_the_row_not_only_the_address() -> None:
    one = tokens.for_subscriber(3, "Ann@Example.org", "key-one")
    assert tokens.names(one, "ann@example.org", "key-one", old_links=False)
    assert not tokens.names(one, "ann@example.org", "key-two", old_links=False)
    assert not tokens.names(one, "bob@example.org", "key-one", old_links=False)
    before_0002 = {"s": 3, "a": tokens.address_digest("ann@example.org")}
    assert tokens.names(before_0002, "ann@example.org", "key-one", old_links=True)
    assert not tokens.names(before_0002, "ann@example.org", "key-one", old_links=False)


def test_links_in_mail_sent_before_the_move_still_verify(tmp_path: Path) -> None:
    """Tokens and a VERP address made by the code before issue #13 moved the modules (a
    committed fixture): the salt is `newsroom.{purpose}`, not a module path, and must never
    change, or every link in every email already sent breaks."""
    made = json.loads((DATA / "before-issue-13.json").read_text(encoding="utf-8"))
    (tmp_path / "newsroom.toml").write_text(
        f'[sending]\nbounce_address = "{made["bounce_address"]}"\n', encoding="utf-8"
    )
    cfg = settings.load(tmp_path, {"NEWSROOM_SECRET_KEY": made["secret_key"]})
    now = datetime.fromisoformat(made["now"])
    person = made["subscriber"]
    for purpose in ("unsubscribe", "preferences", "confirm"):
        payload = tokens.read(cfg, purpose, made["tokens"][purpose], now=now)
        assert payload["s"] == person["id"]
        assert tokens.names(payload, person["email"], person["token_key"], old_links=False)
    assert tokens.read(cfg, "confirm", made["tokens"]["confirm"], now=now)["l"] == [1, 2]
    assert tokens.read(cfg, "form", made["tokens"]["form"], now=now)["c"] == "cookie-value"
    assert verp.delivery_id(cfg, made["verp"]["envelope_sender"]) == made["verp"]["delivery_id"]
