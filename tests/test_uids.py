"""Keyed UIDs and pseudonyms (uids.py): valid, stable per key, standard UIDs untouched."""

import re

import pytest

from fastanon import uids

VALID = re.compile(r"2\.25\.(0|[1-9]\d*)")


@pytest.mark.parametrize("old", ["1.2.3", "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
                                 "9" * 64, ""])
def test_new_uid_is_valid_and_stable(old):
    new = uids.new_uid(b"k", old)
    if not old:
        assert new == ""
        return
    assert VALID.fullmatch(new) and len(new) <= 64
    assert new == uids.new_uid(b"k", old) != uids.new_uid(b"other", old)


def test_standard_uids_stay():
    for old in ("1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.2.16.4"):
        assert uids.new_uid(b"k", old) == old


def test_remap_multivalued_and_padding():
    cache = {}
    raw = b"1.2.3\\1.2.840.10008.1.2\0"
    new = uids.remap_uids(b"k", raw, cache).rstrip(b"\0").decode()
    first, second = new.split("\\")
    assert first == uids.new_uid(b"k", "1.2.3") and second == "1.2.840.10008.1.2"
    assert len(uids.remap_uids(b"k", raw, cache)) % 2 == 0
    assert uids.remap_uids(b"k", b"1.2.840.10008.1.2\0", cache) is None


def test_key_bytes():
    assert uids.key_bytes("abc") == b"abc"
    assert uids.key_bytes(None) != uids.key_bytes(None)
    with pytest.raises(ValueError):
        uids.key_bytes("")


def test_pseudonym():
    p = uids.pseudonym(b"k", "PAT-1")
    assert len(p) == 16 and p.isalnum() and p.isupper() or p.isdigit() is False
    assert p == uids.pseudonym(b"k", "PAT-1") != uids.pseudonym(b"k", "PAT-2")
