"""Malformed input: every refusal is a clean FastanonError naming the file and the byte; the file
path leaves no output and no temporary file behind and never touches its input."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest

import cases
import fastanon
from conftest import hex2bytes, pydicom_reads_fully, read_bytes
from fastanon import FastanonError
from fastanon.elements import FLAG_IMPLICIT, FLAG_LONG, KIND_FRAGMENTS, KIND_ITEM
from fastanon.scan import MAX_DEPTH, parse

# Files covering each encoding and structure: explicit LE, implicit LE, big endian, deflated,
# encapsulated, no meta (explicit BE and LE), nested defined-length sequences, a DICOMDIR.
SAMPLES = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm",
           "JPEG2000.dcm", "ExplVR_BigEndNoMeta.dcm", "rtstruct.dcm", "rtplan.dcm",
           "dicomdirtests/DICOMDIR", "UN_sequence.dcm", "nested_priv_SQ.dcm"]
POLICIES = [{}, {"PatientName": "remove", "ReferencedSOPInstanceUID": "replace"}]


def _refused(data: bytes, name: str) -> FastanonError:
    with pytest.raises(FastanonError) as info:
        fastanon.anonymize(data, policy={"PatientName": "remove"}, name=name)
    message = str(info.value)
    assert message.startswith(f"{name}: "), message
    assert "byte" in message, message
    return info.value


def _clean_error_or_valid(data: bytes, name: str, policy: dict) -> bool:
    """True when refused cleanly; else the output must be a file pydicom reads fully."""
    try:
        out = fastanon.anonymize(data, policy=policy, name=name)
    except FastanonError as exc:
        assert str(exc).startswith(f"{name}: ") and "byte" in str(exc), str(exc)
        return True
    if policy == {}:
        assert out == data
    assert pydicom_reads_fully(out), f"{name}: output pydicom cannot read"
    return False


# --- truncation ---------------------------------------------------------------------------------

def _cut_points(raw: bytes) -> list[int]:
    """Offsets around every element boundary of the file (header, value, a byte in), plus a
    stride through the bulk data."""
    parsed = parse(raw)
    points = set(range(0, min(len(raw), 140)))
    if not parsed.deflated:
        for region in filter(None, (parsed.meta, parsed.dataset)):
            for e in region.elements():
                points.update({e.start + 1, e.start + 4, e.start + 7, e.vstart, e.vstart + 1,
                               e.end - 1, e.end})
    points.update(range(parsed.dataset_start, len(raw), max(1, len(raw) // 97)))
    return sorted(p for p in points if 0 <= p < len(raw))


@pytest.mark.parametrize("name", SAMPLES)
def test_truncated_files(name):
    raw = read_bytes(name)
    parsed = parse(raw)
    top = [e for e in parsed.dataset.elements() if e.depth == 0] if not parsed.deflated else []
    fragment_ends = {e.end for e in parsed.dataset.elements()
                     if e.depth == 1 and parsed.dataset.element(e.parent).kind == KIND_FRAGMENTS}
    refused = 0
    for cut in _cut_points(raw):
        data = raw[:cut]
        refused += _clean_error_or_valid(data, f"{name}[:{cut}]", POLICIES[cut % 2])
        # A cut inside a top-level element past its first 8 bytes can never be accepted
        # (fewer than 8 trailing bytes are padding, as pydicom reads them too), except one right
        # after a fragment of Pixel Data: read as its missing sequence delimiter (as dcmtk does).
        if any(e.start + 8 <= cut < e.end for e in top) and cut not in fragment_ends:
            _refused(data, f"{name}[:{cut}]")
    assert refused > 20


def test_truncated_deflated_stream_is_refused():
    raw = read_bytes("image_dfl.dcm")
    start = parse(raw).dataset_start
    for cut in range(start + 1, len(raw) - 1, 37):
        _refused(raw[:cut], f"image_dfl.dcm[:{cut}]")


# --- lengths --------------------------------------------------------------------------------

def _with_length(raw: bytes, offset: int, length: int, big: bool = False) -> bytes:
    return raw[:offset] + length.to_bytes(4, "big" if big else "little") + raw[offset + 4:]


@pytest.mark.parametrize("length", [0xFFFFFFF0, 0x7FFFFFFF, 0xFFFFFFFE, 0x10000000])
@pytest.mark.parametrize("name", ["MR_small_implicit.dcm", "rtplan.dcm", "CT_small.dcm"])
def test_huge_lengths_of_elements_items_sequences(name, length):
    raw = read_bytes(name)
    parsed = parse(raw)
    targets = {}
    for e in parsed.dataset.elements():
        if e.kind == KIND_ITEM:
            targets.setdefault("item", e)
        elif e.flags & (FLAG_IMPLICIT | FLAG_LONG):     # a 32-bit length field
            targets.setdefault("sequence" if e.vr == "SQ" else "element", e)
    assert "element" in targets
    for kind, e in targets.items():
        data = _with_length(raw, e.length_offset, length, parsed.dataset.big)
        message = str(_refused(data, f"{name} {kind}"))
        assert f"{e.start:,}" in message or "past the end" in message or "delimiter" in message


def test_length_past_the_end_names_tag_and_byte():
    data = cases.part10(cases.EXPLICIT_LE, hex2bytes("""
        10 00 10 00  50 4E  04 00  44 4F 45 5E            # (0010,0010) PN 'DOE^'
        E0 7F 10 00  4F 57 00 00  00 00 10 00  00 00      # (7FE0,0010) OW declares 1 MiB, has 2
    """))
    message = str(_refused(data, "short.dcm"))
    assert "(7FE0,0010)" in message and "1,048,576" in message
    assert f"byte {len(data) - 14:,}" in message


def test_odd_length_header_overrun():
    """A long-VR header cut after its VR; a 16-bit length running past the end."""
    meta_only = cases.part10(cases.EXPLICIT_LE, b"")
    for tail in ("E0 7F 10 00  4F 42 00 00  00 00", "10 00 10 00  50 4E  FF 00  41 42"):
        _refused(meta_only + hex2bytes(tail), "tail.dcm")


# --- tags and structure ---------------------------------------------------------------------

GARBAGE = {
    "item at top level": "FE FF 00 E0  04 00 00 00  41 42 43 44",
    "item delimiter at top level": "FE FF 0D E0  00 00 00 00",
    "sequence delimiter at top level": "FE FF DD E0  00 00 00 00",
    "non-item inside a sequence": """
        08 00 15 11  53 51 00 00  FF FF FF FF             # (0008,1115) SQ, undefined
        10 00 10 00  50 4E  04 00  44 4F 45 5E            #   an element where an item belongs
        FE FF DD E0  00 00 00 00
    """,
    "undefined sequence without delimiter": """
        08 00 15 11  53 51 00 00  FF FF FF FF             # (0008,1115) SQ, undefined
        FE FF 00 E0  FF FF FF FF                          #   item, undefined, never closed
        10 00 10 00  50 4E  04 00  44 4F 45 5E
    """,
    "garbage tag and VR": "FF FF FF FF  01 02 03 04  05 06 07 08",
    "odd tag, lowercase VR": "11 00 11 00  6C 6F  20 00  41 42 43 44",
    "undefined length on UT": "10 00 10 00  55 54 00 00  FF FF FF FF  41 42",
    "item longer than its sequence": """
        08 00 15 11  53 51 00 00  10 00 00 00             # (0008,1115) SQ, 16 bytes
        FE FF 00 E0  20 00 00 00                          #   item claims 32 bytes
        10 00 10 00  50 4E  04 00  44 4F 45 5E
        10 00 20 00  4C 4F  04 00  49 44 49 44
        10 00 30 00  44 41  08 00  31 39 37 30 30 31 30 31
    """,
    "fragment with undefined length": """
        E0 7F 10 00  4F 42 00 00  FF FF FF FF             # (7FE0,0010) OB, undefined
        FE FF 00 E0  FF FF FF FF                          #   a fragment cannot be undefined
        FE FF DD E0  00 00 00 00
    """,
}


@pytest.mark.parametrize("what", sorted(GARBAGE))
def test_garbage_structure(what):
    data = cases.part10(cases.EXPLICIT_LE, hex2bytes("""
        08 00 16 00  55 49  08 00  31 2E 32 2E 33 2E 34 00    # (0008,0016) UI '1.2.3.4'
    """) + hex2bytes(GARBAGE[what]))
    _refused(data, what)


@pytest.mark.parametrize("seed", range(8))
def test_garbage_after_meta(seed):
    """Random bytes where the data set should be: refused cleanly or read as pydicom reads them."""
    import random
    rng = random.Random(seed)
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 400)))
    _clean_error_or_valid(cases.part10(cases.EXPLICIT_LE, body), f"garbage{seed}", {})


# --- nesting --------------------------------------------------------------------------------

def _nested(depth: int, undefined: bool) -> bytes:
    """depth sequences (0008,1115), each in an item of the one around it, implicit VR LE."""
    inner = hex2bytes("10 00 10 00  04 00 00 00  44 4F 45 5E")   # (0010,0010) 'DOE^'
    if undefined:
        head = hex2bytes("08 00 15 11  FF FF FF FF  FE FF 00 E0  FF FF FF FF")
        tail = hex2bytes("FE FF 0D E0  00 00 00 00  FE FF DD E0  00 00 00 00")
        return cases.part10(cases.IMPLICIT_LE, head * depth + inner + tail * depth)
    for _ in range(depth):
        item = hex2bytes("FE FF 00 E0") + len(inner).to_bytes(4, "little") + inner
        inner = hex2bytes("08 00 15 11") + len(item).to_bytes(4, "little") + item
    return cases.part10(cases.IMPLICIT_LE, inner)


@pytest.mark.parametrize("undefined", [True, False])
def test_10000_deep_nesting_is_refused(undefined):
    message = str(_refused(_nested(10_000, undefined), "deep.dcm"))
    assert f"nested deeper than {MAX_DEPTH}" in message


@pytest.mark.parametrize("undefined", [True, False])
def test_deep_nesting_within_the_limit_works(undefined):
    data = _nested(MAX_DEPTH // 2 - 1, undefined)
    assert fastanon.anonymize(data, policy={}) == data
    out = fastanon.anonymize(data, policy={"PatientName": "remove"})
    assert len(out) == len(data) - 12
    assert pydicom_reads_fully(out)


# --- not DICOM at all -----------------------------------------------------------------------

NOT_DICOM = {
    "empty": b"",
    "one byte": b"\x08",
    "text": b"Hello, this is not a DICOM file at all.\n" * 5,
    "png": bytes.fromhex("89504E470D0A1A0A0000000D49484452") + bytes(100),
    "gzip": zlib.compress(b"x" * 1000),
    "preamble and DICM only": bytes(128) + b"DICM",
    "DICM and garbage": bytes(128) + b"DICM" + b"\xff" * 50,
    "zeros": bytes(4096),
}


@pytest.mark.parametrize("what", sorted(NOT_DICOM))
def test_not_dicom(what):
    data = NOT_DICOM[what]
    try:
        fastanon.anonymize(data, policy={}, name=what)
    except FastanonError as exc:
        assert str(exc).startswith(f"{what}: ") and "byte" in str(exc)
        return
    # Accepted only if pydicom reads it as DICOM too (e.g. a meta group and an empty data set).
    assert pydicom_reads_fully(data), what


# --- the file path: no partial output, input untouched --------------------------------------

def _element(name: str, tag: int):
    return next(e for e in parse(read_bytes(name)).dataset.elements() if e.tag == tag)


BAD_FILES = {
    "truncated": read_bytes("CT_small.dcm")[:5000],
    "huge length": _with_length(read_bytes("MR_small_implicit.dcm"),
                                _element("MR_small_implicit.dcm", 0x00100010).length_offset, 0xFFFFFFF0),
    "deep": _nested(10_000, True),
    "not dicom": NOT_DICOM["text"],
    "empty": b"",
    "truncated deflate": read_bytes("image_dfl.dcm")[:2000],
}


@pytest.mark.parametrize("what", sorted(BAD_FILES))
def test_file_path_leaves_nothing(what, tmp_path):
    src = tmp_path / "in" / "bad.dcm"
    src.parent.mkdir()
    src.write_bytes(BAD_FILES[what])
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    mtime = os.stat(src).st_mtime_ns
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(FastanonError) as info:
        fastanon.anonymize_file(src, out_dir / "bad.dcm", policy={"PatientName": "remove"})
    assert str(src) in str(info.value)
    assert os.listdir(out_dir) == []
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    assert os.stat(src).st_mtime_ns == mtime


def test_file_path_keeps_an_existing_output_on_failure(tmp_path):
    """A failed run does not clobber what is already at dst."""
    src, dst = tmp_path / "bad.dcm", tmp_path / "out.dcm"
    src.write_bytes(BAD_FILES["truncated"])
    dst.write_bytes(b"previous")
    with pytest.raises(FastanonError):
        fastanon.anonymize_file(src, dst, policy={})
    assert dst.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["bad.dcm", "out.dcm"]


# --- regressions found by test_fuzz -----------------------------------------------------------

def test_unknown_vr_is_refused():
    """Two capitals that are no VR: pydicom reads a 16-bit length but cannot decode the value."""
    data = cases.part10(cases.EXPLICIT_LE, hex2bytes("""
        10 00 10 00  50 4E  04 00  44 4F 45 5E            # (0010,0010) PN 'DOE^'
        20 00 10 00  53 49  02 00  49 44                  # (0020,0010) 'SI': not a VR
    """))
    message = str(_refused(data, "vr.dcm"))
    assert "(0020,0010)" in message and "'SI'" in message


def test_implicit_sequence_must_hold_items():
    """A dictionary SQ in implicit VR whose value is not items: pydicom parses it as items and
    reads garbage; fastanon refuses it instead of passing it on as opaque bytes."""
    data = cases.part10(cases.IMPLICIT_LE, hex2bytes("""
        08 00 15 11  08 00 00 00                          # (0008,1115) SQ, 8 bytes
        10 00 10 00  00 00 00 00                          #   not an item
    """))
    assert "expected a sequence item" in str(_refused(data, "sq.dcm"))
