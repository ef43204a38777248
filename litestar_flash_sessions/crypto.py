"""Sealing: authenticated encryption of cookie payloads with rotating secrets.

A sealed token is the URL-safe base64, without padding, of::

    version (1 byte) | key id (4 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext and tag

Each secret gives a 256-bit key through HKDF-SHA256, and a key id that names it. The first
secret seals; every secret opens, so that a secret can be replaced without logging users out.
The version, the key id and a caller-chosen context (the cookie's name) are authenticated too, so
a token cannot be moved to another cookie.
"""

from __future__ import annotations

import binascii
import math
import os
import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("MIN_SECRET_BITS", "MIN_SECRET_LENGTH", "Sealer", "check_secret", "estimated_bits")

MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 128
"""The least estimated entropy of a secret (see :func:`estimated_bits`)."""
_HOW_TO_GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_VERSION = b"\x01"
_HEADER = len(_VERSION) + 4 + 12
_TAG = 16
_SALT = b"litestar-flash-sessions"
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")
"""Back to the standard alphabet; ``+``, ``/`` and ``=``, not in a token's alphabet, become a
character that strict decoding refuses."""
_PADDING = (b"", b"===", b"==", b"=")
"""The padding a token of each length modulo 4 lacks (1 is never valid, and stays invalid)."""
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CANONICAL_LAST: tuple[frozenset[str], ...] = (
    frozenset(_ALPHABET),
    frozenset(),
    frozenset(c for i, c in enumerate(_ALPHABET) if i % 16 == 0),
    frozenset(c for i, c in enumerate(_ALPHABET) if i % 4 == 0),
)
"""For each token length modulo 4, the characters a canonical token can end with: the bits of
the last character beyond the data must be zero, so that exactly one string encodes each token
(base64 decoding ignores those bits)."""


_ALPHABETS = tuple(
    frozenset(characters)
    for characters in (
        string.digits,
        string.digits + "abcdef",  # secrets.token_hex
        string.digits + "ABCDEF",
        string.ascii_lowercase,
        string.ascii_lowercase + string.digits,
        string.ascii_letters,
        string.ascii_letters + string.digits,
        string.ascii_letters + string.digits + "-_",  # secrets.token_urlsafe
        string.ascii_letters + string.digits + "+/=",  # base64, openssl rand -base64
        string.printable[:95],  # printable ASCII, space included
    )
)
"""The alphabets secrets are drawn from, smallest first: a secret's is the first that holds it."""


def estimated_bits(secret: str) -> float:
    """Return the estimated entropy of ``secret``: the length of its pattern (the secret, or the
    part it repeats: ``"abc123" * 6`` is 6 characters of pattern) times log2 of the size of the
    smallest usual alphabet that holds it (hex digits, base64...). So a generated secret is
    judged by how it was generated (32 hex digits: 128 bits) rather than by the characters it
    happens to show. One with few distinct characters (under a third of its alphabet or
    length: ``"ab" * 20``), or outside printable ASCII, is judged by their number instead.
    """
    distinct = set(secret)
    alphabet = next((len(alphabet) for alphabet in _ALPHABETS if distinct <= alphabet), 0)
    length = _period(secret)
    if 3 * len(distinct) < min(alphabet, len(secret)) or not alphabet:
        return length * math.log2(len(distinct))
    return length * math.log2(alphabet)


def _period(text: str) -> int:
    """Return the length of the shortest part that ``text`` repeats at least twice over (all of it
    if none): a random secret whose end happens to match its start repeats nothing.
    """
    return next((period for period in range(1, len(text) // 2 + 1) if text[period:] == text[:-period]), len(text))


def check_secret(secret: object, owner: str) -> str:
    """Return ``secret`` if it is a string strong enough to derive a key from.

    Raises:
        ValueError: It is not a string, is shorter than 32 characters, or its estimated entropy
            (:func:`estimated_bits`) is under 128 bits; the message says how to generate a good one.
    """
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"{owner} secrets must be strings of at least {MIN_SECRET_LENGTH} characters; {_HOW_TO_GENERATE}"
        )
    bits = estimated_bits(secret)
    if bits < MIN_SECRET_BITS:
        raise ValueError(
            f"{owner} secret is too guessable (about {bits:.0f} bits of entropy, {MIN_SECRET_BITS} needed); "
            f"{_HOW_TO_GENERATE}"
        )
    return secret


class Sealer:
    """Seal and open byte strings with AES-256-GCM under a list of secrets.

    Args:
        secrets: One secret, or a list of them: the first seals, all open.
        context: Bound into every token: a token sealed for one context does not open in another.

    Raises:
        ValueError: No secret was given, or one is weak (see :func:`check_secret`).
        ImportError: ``cryptography`` is not installed (the ``[cookie]`` extra).
    """

    __slots__ = ("_invalid_tag", "_keys", "_sealing_aad", "_sealing_key", "_token_prefix")

    def __init__(self, secrets: str | Sequence[str], context: bytes, owner: str = "CookieStore") -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not isinstance(secrets, (str, list, tuple)):
            raise ValueError(f"{owner} needs a secret (a string) or a list of them, not {type(secrets).__name__}")
        secret_list = [secrets] if isinstance(secrets, str) else list(secrets)
        if not secret_list:
            raise ValueError(f"{owner} needs at least one secret")
        for secret in secret_list:
            check_secret(secret, owner)
        # key id -> (cipher, authenticated data: the token's version and key id, then the context)
        self._keys: dict[bytes, tuple[AESGCM, bytes]] = {}
        for secret in secret_list:
            key_id, key = _derive(secret)
            self._keys.setdefault(key_id, (AESGCM(key), _VERSION + key_id + context))
        self._sealing_key, self._sealing_aad = self._keys[_derive(secret_list[0])[0]]
        self._token_prefix = self._sealing_aad[: len(_VERSION) + 4]  # the version and key id
        self._invalid_tag = InvalidTag

    def seal(self, plaintext: bytes) -> str:
        """Encrypt and authenticate ``plaintext`` with the first secret, as a URL-safe token."""
        nonce = os.urandom(12)  # seal_bytes(plaintext, b""), inline: a cookie store seals per changed response
        sealed = self._token_prefix + nonce + self._sealing_key.encrypt(nonce, plaintext, self._sealing_aad)
        return binascii.b2a_base64(sealed, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")

    def seal_bytes(self, plaintext: bytes, bound_to: bytes) -> bytes:
        """Encrypt ``plaintext`` with the first secret, bound to ``bound_to`` (a record's key):
        the sealed bytes open only with the same ``bound_to``. Raw bytes, for a store.
        """
        nonce = os.urandom(12)
        return self._token_prefix + nonce + self._sealing_key.encrypt(nonce, plaintext, self._sealing_aad + bound_to)

    def open_bytes(self, sealed: bytes, bound_to: bytes) -> bytes | None:
        """Return the plaintext of bytes from :meth:`seal_bytes`, or ``None`` if they are not
        such bytes, were tampered with, are bound to something else or sealed with a secret not
        in the list.
        """
        if len(sealed) < _HEADER + _TAG or sealed[:1] != _VERSION:
            return None
        key = self._keys.get(sealed[1:5])
        if key is None:
            return None
        cipher, aad = key
        try:
            return cipher.decrypt(sealed[5:_HEADER], sealed[_HEADER:], aad + bound_to)
        except self._invalid_tag:
            return None

    def open(self, token: str) -> bytes | None:
        """Return the plaintext of ``token``, or ``None`` if it is malformed, not canonical,
        tampered, or sealed with a secret that is not in the list.
        """
        if not token or token[-1] not in _CANONICAL_LAST[len(token) % 4]:
            return None
        try:
            standard = token.encode("ascii").translate(_FROM_URLSAFE) + _PADDING[len(token) % 4]
            raw = binascii.a2b_base64(standard, strict_mode=True)
        except ValueError:  # binascii.Error: not URL-safe base64; UnicodeEncodeError: not ASCII
            return None
        return self.open_bytes(raw, b"")


def _derive(secret: str) -> tuple[bytes, bytes]:
    """Derive a key id and a 256-bit key from one secret."""
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = HKDF(SHA256(), length=36, salt=_SALT, info=b"cookie-store aes-256-gcm").derive(secret.encode("utf-8"))
    return material[32:], material[:32]
