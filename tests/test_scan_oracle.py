"""pydicom is the oracle for the scanner: for every bundled file it reads fully, fastanon's element
tables hold the same elements (tag, VR, value length, value bytes) at every depth."""

from __future__ import annotations

import os
import warnings

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement

from conftest import (TEST_FILES_DIR, TRUNCATED, all_test_files, encoded, read_bytes, read_raw, readable_files,
                      unreadable_files)
import cases
from cases import CASES
from fastanon import FastanonError
from fastanon.elements import (FLAG_IMPLICIT, FLAG_OPEN, ITEM, KIND_ELEMENT, KIND_FRAGMENTS, KIND_ITEM,
                               KIND_SEQUENCE)
from fastanon.scan import parse

UNDEFINED = 0xFFFFFFFF


def pydicom_elements(ds, path=()) -> list[tuple]:
    """(path, tag, VR, length, value bytes) of every element at every depth; path is a tuple of
    (sequence tag, item number) pairs. Raw elements are read with get_item, before conversion."""
    out = []
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement):
            vr = _expected_vr(elem)
            length, value = elem.length, elem.value
        elif elem.VR == "SQ":       # pydicom parsed an undefined-length or empty SQ while reading
            assert elem.is_undefined_length or not elem.value, elem
            vr, length, value = ("SQ", UNDEFINED, None) if elem.is_undefined_length else ("SQ", 0, b"")
        else:                       # converted while reading (empty values, PixelRepresentation)
            vr, length, value = str(elem.VR), *encoded(elem, ds)
        if length == UNDEFINED:
            value = None if vr == "SQ" else value   # fragments: bytes up to the delimiter
        out.append((path, int(tag), vr, length, value))
        # A private SQ that pydicom knows from its private dictionary only (raw VR 'UN') is
        # opaque bytes to fastanon, which has no private dictionary.
        if ds[tag].VR == "SQ" and vr != "UN":
            for number, item in enumerate(ds[tag].value):
                out.extend(pydicom_elements(item, path + ((int(tag), number),)))
    return out


def _expected_vr(raw: RawDataElement) -> str:
    """The VR fastanon reports for a raw element: pydicom's own rule when it converts one
    (pydicom.hooks.raw_element_vr) for implicit VR (raw VR None) and for explicit 'UN':
    the public dictionary VR; LO for a private creator; UL for a group length. One deliberate
    difference: other private tags stay 'UN' (fastanon has no private dictionary; pydicom would
    look in its own). An ambiguous dictionary VR ('US or SS') is settled in _matches."""
    vr = raw.VR
    if vr is None or vr == "UN":
        tag = raw.tag
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            if tag.is_private and 0x10 <= tag.element <= 0xFF:
                vr = "LO"
            elif not tag.is_private and tag.element == 0:
                vr = "UL"
            else:
                vr = "UN"
    return str(vr)


def fastanon_elements(region, path=()) -> list[tuple]:
    """The same tuples from a fastanon Region."""
    elements = region.elements()
    paths = {-1: ()}
    items_seen: dict[int, int] = {}
    out = []
    for e in elements:
        if e.kind == KIND_ITEM:
            number = items_seen.get(e.parent, 0)
            items_seen[e.parent] = number + 1
            paths[e.index] = paths[elements[e.parent].parent] + ((elements[e.parent].tag, number),)
            continue
        if e.kind == KIND_SEQUENCE and e.vlen == UNDEFINED:
            value = None
        elif e.kind == KIND_FRAGMENTS:      # pydicom stops at the delimiter (if there is one)
            value = bytes(region.buf[e.vstart:e.end - (0 if e.flags & FLAG_OPEN else 8)])
        else:
            value = region.value(e)
        out.append((paths[e.parent], e.tag, e.vr, e.vlen, value))
    return out


def _matches(ours: tuple, theirs: tuple) -> bool:
    if ours == theirs:
        return True
    tag = ours[1]
    if ours[2] == "UN" and tag >> 16 & 1 and tag & 0xFFFF >= 0x100 and ours[3:] == theirs[3:]:
        return True     # a private value pydicom converted (empty) with its private dictionary
    if ours[2] == "UL" and theirs[2] == "UN" and tag & 0xFFFF == 0 and ours[3:] == theirs[3:]:
        return True     # a group length of an odd group: pydicom calls it private (PS3.5 §7.2)
    # An ambiguous dictionary VR ('US or SS', 'OB or OW'): fastanon picks one alternative.
    return ours[:2] == theirs[:2] and ours[2] in theirs[2].split(" or ") and ours[3:] == theirs[3:]


def _compare(ours: list[tuple], theirs: list[tuple], what: str) -> None:
    ours, theirs = sorted(ours, key=_key), sorted(theirs, key=_key)
    assert [_key(t) for t in ours] == [_key(t) for t in theirs], f"{what}: different elements"
    for a, b in zip(ours, theirs):
        assert _matches(a, b), f"{what}: {a[:4]} != {b[:4]}"


def _key(t: tuple):
    return t[0], t[1]


def _read(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(os.path.join(TEST_FILES_DIR, name), force=True)


READABLE = readable_files()


def test_the_rule_keeps_every_dicom_file():
    """The readability rule excludes only the known truncated files and the non-DICOM files."""
    excluded = set(unreadable_files())
    assert TRUNCATED <= excluded
    non_dicom = excluded - TRUNCATED
    assert non_dicom == {"README.txt", "crayons.icc", "dicomdirtests/README.txt",
                         "dicomdirtests/TINY_ALPHA/README", "no_meta.dcm", "rtplan.dump",
                         "rtstruct.dump", "test1.json", "test_PN.json", "zipMR.gz"}
    assert len(READABLE) == len(all_test_files()) - len(excluded) >= 150


def test_truncated_list_is_truncated():
    """Each TRUNCATED file declares more bytes than it has; shown here without fastanon."""
    raw = read_bytes("dicomdirtests/DICOMDIR-nooffset")
    assert raw[10860:10864] == bytes.fromhex("feff00e0")                  # (FFFE,E000) item
    assert 10868 + int.from_bytes(raw[10864:10868], "little") > len(raw)  # 248 bytes, 224 left
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        ds = _read(name)
        lengths = [(e.length, len(e.value)) for e in [ds.get_item(t) for t in ds.keys()]
                   if isinstance(e, RawDataElement) and e.length != UNDEFINED]
        assert any(have < declared for declared, have in lengths), name


@pytest.mark.parametrize("name", sorted(set(unreadable_files())))
def test_unreadable_files_are_refused(name):
    with pytest.raises(FastanonError, match=r"at byte|not a DICOM file") as info:
        parse(read_bytes(name), name)
    assert name in str(info.value)


@pytest.mark.parametrize("name", READABLE)
def test_scan_matches_pydicom(name):
    raw = read_bytes(name)
    parsed = parse(raw, name)
    ds, meta, data = read_raw(raw)
    if parsed.meta is None:
        assert len(ds.file_meta) == 0
    else:
        _compare(fastanon_elements(parsed.meta), pydicom_elements(meta), f"{name} meta")
    theirs = pydicom_elements(data)
    assert theirs, name
    _compare(fastanon_elements(parsed.dataset), theirs, name)
    implicit, little = ds.original_encoding
    assert (parsed.dataset.implicit, parsed.dataset.big) == (implicit, not little), name
    assert parsed.deflated == (parsed.transfer_syntax == pydicom.uid.DeflatedExplicitVRLittleEndian)


@pytest.mark.parametrize("name", READABLE)
def test_table_is_consistent(name):
    """Structural invariants of the table: children lie inside their parent, depth follows the
    parent, siblings do not overlap, and defined lengths add up."""
    parsed = parse(read_bytes(name), name)
    for region in filter(None, (parsed.meta, parsed.dataset)):
        elements = region.elements()
        last_end: dict[int, int] = {}
        for e in elements:
            assert e.start < e.vstart <= e.end <= len(region.buf)
            if e.vlen != UNDEFINED:
                assert e.end == e.vstart + e.vlen or e.kind == KIND_SEQUENCE, e
            if e.parent >= 0:
                p = elements[e.parent]
                assert p.vstart <= e.start and e.end <= p.end, (e, p)
                assert e.depth == p.depth + 1
                assert (e.kind == KIND_ITEM) == (p.kind in (KIND_SEQUENCE, KIND_FRAGMENTS))
            else:
                assert e.depth == 0 and e.kind != KIND_ITEM
            assert e.start >= last_end.get(e.parent, 0)
            last_end[e.parent] = e.end


def test_encodings_are_covered():
    """The oracle sees every encoding the scanner supports."""
    seen = set()
    for name in READABLE:
        parsed = parse(read_bytes(name), name)
        seen.add(("meta" if parsed.meta else "no meta", parsed.dataset.implicit, parsed.dataset.big,
                  parsed.deflated))
    assert ("meta", True, False, False) in seen
    assert ("meta", False, False, False) in seen
    assert ("meta", False, True, False) in seen
    assert ("meta", False, False, True) in seen
    assert ("no meta", True, False, False) in seen
    assert ("no meta", False, False, False) in seen
    assert ("no meta", False, True, False) in seen


# --- hand-written byte-level cases (tests/cases) ----------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_case_matches_pydicom(case):
    raw = CASES[case]
    parsed = parse(raw, case)
    ds, meta, data = read_raw(raw)
    if parsed.meta is not None:
        _compare(fastanon_elements(parsed.meta), pydicom_elements(meta), f"{case} meta")
    else:
        assert len(ds.file_meta) == 0
    theirs = pydicom_elements(data)
    assert theirs, case
    _compare(fastanon_elements(parsed.dataset), theirs, case)
    implicit, little = ds.original_encoding
    assert (parsed.dataset.implicit, parsed.dataset.big) == (implicit, not little), case


def _kinds(raw: bytes) -> list[tuple[int, int, int]]:
    return [(e.tag, e.kind, e.depth) for e in parse(raw).dataset.elements()]


def test_case_tables():
    """What the oracle cannot see: items, fragments, and how each header was read."""
    assert _kinds(cases.IMPLICIT_NESTED)[2:11] == [
        (0x00081115, KIND_SEQUENCE, 0), (ITEM, KIND_ITEM, 1),
        (0x0008114A, KIND_SEQUENCE, 2), (ITEM, KIND_ITEM, 3), (0x00081150, KIND_ELEMENT, 4),
        (0x00400555, KIND_SEQUENCE, 4), (ITEM, KIND_ITEM, 5), (0x0040A040, KIND_ELEMENT, 6),
        (0x00100010, KIND_ELEMENT, 0)]
    fragments = parse(cases.ENCAPSULATED).dataset.elements()[-4:]
    assert [(e.kind, e.vlen) for e in fragments] == [
        (KIND_FRAGMENTS, UNDEFINED), (KIND_ITEM, 0), (KIND_ITEM, 6), (KIND_ITEM, 4)]
    assert fragments[0].end == len(cases.ENCAPSULATED)
    for raw in (cases.UN_UNDEFINED, cases.UN_KNOWN_SQ):
        sequence = next(e for e in parse(raw).dataset.elements() if e.kind == KIND_SEQUENCE)
        inner = parse(raw).dataset.elements()[sequence.index + 2]
        assert inner.flags & FLAG_IMPLICIT and inner.depth == 2
    switched = parse(cases.SWITCH_TO_IMPLICIT).dataset.elements()
    assert [bool(e.flags & FLAG_IMPLICIT) for e in switched if e.kind == KIND_ELEMENT] == [
        False, True, True, False]
    padded = parse(cases.TRAILING_PADDING)
    assert padded.dataset.elements()[-1].end == len(cases.TRAILING_PADDING) - 4
    assert parse(cases.ODD_LENGTHS).dataset.elements()[1].vlen == 1
