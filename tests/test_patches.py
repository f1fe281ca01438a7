"""The kernel's edits → patches (Table.patches) against the Python step it replaced
(patches_oracle.py), on every real test file with edits chosen at random: removals, new
values, emptied sequences, nested edits, header rewrites; the same patches or the same error."""

from __future__ import annotations

import random

import pytest

from conftest import TRUNCATED, all_test_files, read_bytes
from fastanon import rewrite
from fastanon.elements import FLAG_IMPLICIT, KIND_ITEM, KIND_SEQUENCE
from fastanon.errors import FastanonError, PolicyError
from fastanon.scan import parse
from patches_oracle import patches_py

FILES = [name for name in all_test_files() if name not in TRUNCATED]


def _result(function, region, edits, headers):
    """The region's bytes with the patches applied (the kernel leaves out the patches that
    would write a length as it is), or the error."""
    try:
        patches = function(region, edits, headers)
    except PolicyError as exc:
        return ("error", str(exc))
    assert patches == sorted(patches)
    assert all(a[1] <= b[0] for a, b in zip(patches, patches[1:])), "overlapping patches"
    buf = region.buf
    return rewrite.join(buf, rewrite.pieces(buf, 0, len(buf), patches))


@pytest.mark.parametrize("name", FILES)
def test_the_kernel_patches_as_the_python_step_did(name):
    try:
        parsed = parse(read_bytes(name), name)
    except FastanonError:
        pytest.skip("not read")
    rng = random.Random(name)
    for region in (parsed.meta, parsed.dataset):
        if region is None or not len(region.table):
            continue
        count = len(region.table)
        for _ in range(12):
            edits, headers = {}, {}
            for index in rng.sample(range(count), min(count, rng.randint(1, 12))):
                kind = region.table.row(index)[2]
                choice = rng.random()
                if kind == KIND_ITEM and choice < 0.9:
                    continue                    # items now and then: the error must agree
                if choice < 0.35:
                    edits[index] = None
                elif choice < 0.7:
                    edits[index] = rng.randbytes(rng.choice([0, 2, 4, 10, 70]))
                elif choice < 0.8 and kind == KIND_SEQUENCE:
                    edits[index] = b""
                elif choice < 0.9 and region.table.row(index)[3] & FLAG_IMPLICIT \
                        and not region.implicit:
                    headers[index] = rng.choice(["UN", "LO", "SQ" if kind == KIND_SEQUENCE else "OB"])
                else:
                    edits[index] = rng.randbytes(8)
            assert _result(rewrite.patches, region, edits, headers) == \
                _result(patches_py, region, edits, headers), (name, edits, headers)


def test_header_rewrites_agree_on_a_mixed_data_set():
    """Every switched header of a data set that mixes encodings rewritten, with and without
    edits of the elements inside them."""
    from test_strict import _meta, element
    import struct

    def implicit(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value

    item = implicit(0x00080100, b"121 ") + implicit(0x00080104, b"Spoken")
    sequence = implicit(0x00081032, struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item)
    raw = (_meta(b"1.2.840.10008.1.2.1") + element(0x00080016, b"UI", b"1.2.3\0") + sequence
           + implicit(0x00100010, b"Doe^John") + implicit(0x00280000, struct.pack("<I", 8))
           + implicit(0x00280010, b"\0\1"))
    region = parse(raw).dataset
    headers = rewrite.explicit_vrs(region)
    assert len(headers) == 6
    for edits in ({}, {3: None}, {4: b"Anon"}, {2: b""}, {3: b"x" * 70000}, {6: b"\0\2\0\3"}):
        assert _result(rewrite.patches, region, edits, headers) == \
            _result(patches_py, region, edits, headers), edits
