"""Sealing: what the cookie store's tokens resist."""

from __future__ import annotations

import re
from base64 import urlsafe_b64decode, urlsafe_b64encode

import msgspec
import pytest

from litestar_flash_sessions.crypto import Sealer
from litestar_flash_sessions.stores import CookieStore
from tests.harness import OTHER_SECRET, SECRET, FakeClock

OLD, NEW = OTHER_SECRET, SECRET


def test_round_trip_and_no_plaintext_in_the_token() -> None:
    sealer = Sealer(OLD, b"session_data")
    token = sealer.seal(b"secret user data")
    assert sealer.open(token) == b"secret user data"
    assert b"secret" not in urlsafe_b64decode(token + "==")
    assert sealer.seal(b"x") != sealer.seal(b"x"), "a fresh nonce each time"


def test_key_rotation_first_seals_all_open() -> None:
    old_token = Sealer(OLD, b"c").seal(b"from before")
    rotated = Sealer([NEW, OLD], b"c")
    assert rotated.open(old_token) == b"from before"
    new_token = rotated.seal(b"now")
    assert Sealer(NEW, b"c").open(new_token) == b"now"
    assert Sealer(OLD, b"c").open(new_token) is None, "sealed with the first secret"
    assert Sealer(NEW, b"c").open(old_token) is None, "a dropped secret no longer opens"


def test_token_is_bound_to_its_context() -> None:
    token = Sealer(OLD, b"session_data").seal(b"x")
    assert Sealer(OLD, b"other_cookie").open(token) is None


def test_tampering_anywhere_fails() -> None:
    sealer = Sealer(OLD, b"c")
    raw = bytearray(urlsafe_b64decode(sealer.seal(b"payload") + "=="))
    for index in range(len(raw)):
        tampered = bytearray(raw)
        tampered[index] ^= 0x01
        assert sealer.open(urlsafe_b64encode(tampered).rstrip(b"=").decode()) is None, index


def test_malformed_tokens() -> None:
    sealer = Sealer(OLD, b"c")
    for token in ["", "A", "!!!!", "é", "A" * 10, "=" * 20]:
        assert sealer.open(token) is None


def test_expiry_is_sealed_inside() -> None:
    clock = FakeClock()
    store = CookieStore(OLD, clock=clock)
    record = msgspec.msgpack.encode([{"user": "ann"}, {}])
    token = store.seal("id", record, 60)
    assert store.open(token) == ("id", record)
    clock.advance(61)
    assert store.open(token) is None
    assert store.open(store.seal("id", record, None)) == ("id", record)
    clock.advance(10**9)
    assert store.open(store.seal("id", record, None)) == ("id", record), "no expiry: opens forever"


@pytest.mark.parametrize("session_id", ["é", "x" * 256])
def test_an_id_that_does_not_fit_the_token_is_refused(session_id: str) -> None:
    with pytest.raises(ValueError, match="at most 255 ASCII characters"):
        CookieStore(OLD).seal(session_id, b"\x92\x80\x80", None)


def test_tokens_are_url_safe_base64_and_other_spellings_do_not_open() -> None:
    sealer = Sealer(OLD, b"c")
    tokens = [sealer.seal(bytes(length)) for length in range(1, 40)]  # every length modulo 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", token) for token in tokens)
    token = next(token for token in tokens if "-" in token or "_" in token)
    for spelling in (
        token.translate(str.maketrans("-_", "+/")),  # the standard alphabet
        token + "=" * (-len(token) % 4),  # padded
        token + "=",
        token + "A",
    ):
        if spelling != token:  # padding a token whose length is a multiple of 4 adds nothing
            assert sealer.open(spelling) is None, spelling
    assert sealer.open(token) is not None


def test_only_the_canonical_spelling_of_a_token_opens() -> None:
    """Base64 decoding ignores the bits of the last character beyond the data: the strings that
    differ from a token only there must not open as it."""
    sealer = Sealer(OLD, b"c")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for length in range(1, 40):
        token = sealer.seal(bytes(length))
        if len(token) % 4 == 0:
            continue
        others = [token[:-1] + c for c in alphabet if c != token[-1]]
        opened = [other for other in others if sealer.open(other) is not None]
        assert opened == [], f"{len(opened)} other spellings of a token open"
        assert sealer.open(token) is not None
