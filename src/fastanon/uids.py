"""Value generators keyed by a secret: new UIDs (PS3.5 §B.2 "2.25." UUID-derived form) and pseudonyms."""

from __future__ import annotations

import os

try:                                # the interpreter's own SHA-256 (hashlib loads OpenSSL)
    from _sha2 import sha256 as _sha256          # Python 3.12 and later
except ImportError:
    try:
        from _sha256 import sha256 as _sha256    # 3.11
    except ImportError:
        from hashlib import sha256 as _sha256

STANDARD_ROOT = "1.2.840.10008."   # UIDs the standard itself defines (PS3.6 Annex A): never remapped


def key_bytes(key: bytes | str | None) -> bytes:
    """The secret as bytes; a fresh random one when key is None (consistent within one run only)."""
    if key is None:
        return os.urandom(32)
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not key:
        raise ValueError("an empty key does not protect anything; give a secret or none")
    return bytes(key)


_BLOCK = 64                         # SHA-256's block size (RFC 2104: HMAC)
_KEYED: dict = {}                   # key → (inner, outer) hash states with the padded key in


def keyed_hash(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256(key, message) (RFC 2104), the same bytes as hmac.new(key, message,
    hashlib.sha256).digest(); the key's two padded blocks are hashed once per key.

    >>> import hashlib, hmac
    >>> keyed_hash(b"secret", b"x") == hmac.new(b"secret", b"x", hashlib.sha256).digest()
    True
    """
    states = _KEYED.get(key)
    if states is None:
        block = _sha256(key).digest() if len(key) > _BLOCK else key
        block = block.ljust(_BLOCK, b"\0")
        inner, outer = _sha256(), _sha256()
        inner.update(bytes(b ^ 0x36 for b in block))
        outer.update(bytes(b ^ 0x5C for b in block))
        if len(_KEYED) >= 16:
            _KEYED.clear()
        states = _KEYED[key] = (inner, outer)
    inner, outer = states[0].copy(), states[1].copy()
    inner.update(message)
    outer.update(inner.digest())
    return outer.digest()


_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def base32(data: bytes) -> str:
    """RFC 4648 base 32 of data without the '=' padding (base64.b32encode's letters).

    >>> import base64
    >>> base32(b"fastanon") == base64.b32encode(b"fastanon").decode().rstrip("=")
    True
    """
    bits = len(data) * 8
    number = int.from_bytes(data, "big") << (-bits % 5)
    count = -(-bits // 5)
    return "".join(_BASE32[(number >> (5 * (count - 1 - i))) & 31] for i in range(count))


def new_uid(key: bytes, old: str) -> str:
    """'2.25.' + the decimal of 128 bits of HMAC-SHA256(key, old): at most 44 characters, digits and dots.

    >>> new_uid(b"secret", "1.2.3.4")
    '2.25.20781661674454524959387813499032754908'
    >>> new_uid(b"secret", "1.2.840.10008.5.1.4.1.1.2")      # standard UIDs stay
    '1.2.840.10008.5.1.4.1.1.2'
    """
    if not old or old.startswith(STANDARD_ROOT):
        return old
    digest = keyed_hash(key, b"uid\0" + old.encode("ascii", "replace"))
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


CACHE_LIMIT = 1 << 16


def remap_uids(key: bytes, raw: bytes, cache: dict) -> bytes | None:
    """A UI value (possibly multi-valued) with every non-standard UID replaced; None if nothing changes."""
    old = raw.decode("ascii", "replace").rstrip("\0 ")
    new = cache.get(old)
    if new is None:
        new = "\\".join(new_uid(key, part.strip("\0 ")) for part in old.split("\\"))
        if len(cache) >= CACHE_LIMIT:
            cache.clear()           # new UIDs are recomputed identically: memory stays flat
        cache[old] = new
    if new == old:
        return None
    out = new.encode("ascii")
    return out + b"\0" if len(out) & 1 else out


def pseudonym(key: bytes, value: str, length: int = 16) -> str:
    """A stable pseudonym for an identifier: base32 (A-Z, 2-7) of HMAC-SHA256(key, value).

    >>> pseudonym(b"secret", "PAT-0001")
    'L7JVRE6E6O2CGPL3'
    """
    digest = keyed_hash(key, b"hash\0" + value.encode("utf-8", "replace"))
    return base32(digest[:-(-length * 5 // 8)])[:length]    # the bytes those letters encode


def number_pseudonym(key: bytes, value: str, digits: int = 9) -> str:
    """A stable pseudonym that is a number (for IS values: at most 9 digits, below 2³¹).

    >>> number_pseudonym(b"secret", "4711001") == number_pseudonym(b"secret", "4711001")
    True
    """
    digest = keyed_hash(key, b"number\0" + value.encode("utf-8", "replace"))
    return str(int.from_bytes(digest[:8], "big") % 10 ** digits)
