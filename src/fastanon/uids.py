"""Value generators keyed by a secret: new UIDs (PS3.5 §B.2 "2.25." UUID-derived form) and pseudonyms."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

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


def new_uid(key: bytes, old: str) -> str:
    """'2.25.' + the decimal of 128 bits of HMAC-SHA256(key, old): at most 44 characters, digits and dots.

    >>> new_uid(b"secret", "1.2.3.4")
    '2.25.20781661674454524959387813499032754908'
    >>> new_uid(b"secret", "1.2.840.10008.5.1.4.1.1.2")      # standard UIDs stay
    '1.2.840.10008.5.1.4.1.1.2'
    """
    if not old or old.startswith(STANDARD_ROOT):
        return old
    digest = hmac.new(key, b"uid\0" + old.encode("ascii", "replace"), hashlib.sha256).digest()
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
    digest = hmac.new(key, b"hash\0" + value.encode("utf-8", "replace"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:length]


def number_pseudonym(key: bytes, value: str, digits: int = 9) -> str:
    """A stable pseudonym that is a number (for IS values: at most 9 digits, below 2³¹).

    >>> number_pseudonym(b"secret", "4711001") == number_pseudonym(b"secret", "4711001")
    True
    """
    digest = hmac.new(key, b"number\0" + value.encode("utf-8", "replace"), hashlib.sha256).digest()
    return str(int.from_bytes(digest[:8], "big") % 10 ** digits)
