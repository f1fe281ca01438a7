"""Liberal reading: sequences written as UN by writers that did not follow PS3.5 §6.2.2."""

import io
import struct
import zlib

import pydicom
import pytest

import fastanon
from fastanon.elements import KIND_ELEMENT, KIND_SEQUENCE
from fastanon.scan import parse


def _el(tag: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element (PS3.5 §7.1.2)."""
    if vr in ("OB", "OW", "SQ", "UN", "UT", "UC", "UR"):
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _item(body: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def _file(*elements: bytes) -> bytes:
    syntax = _el(0x00020010, "UI", b"1.2.840.10008.1.2.1\0")
    meta = _el(0x00020000, "UL", struct.pack("<I", len(syntax))) + syntax
    return bytes(128) + b"DICM" + meta + b"".join(elements)


SOURCE_UID = b"1.2.826.0.1.3680043.99.7\0"
# ReferencedImageSequence written as UN with a defined length, its item in EXPLICIT VR.
EXPLICIT_INSIDE_UN = _file(
    _el(0x00080060, "CS", b"CT"),
    _el(0x00081140, "UN", _item(_el(0x00081150, "UI", b"1.2.840.10008.5.1.4.1.1.2\0")
                                + _el(0x00081155, "UI", SOURCE_UID))),
    _el(0x00100010, "PN", b"DOE^JOHN"),
)


def test_explicit_vr_items_inside_a_un_sequence_are_read_as_pydicom_reads_them():
    parsed = parse(EXPLICIT_INSIDE_UN)
    found = {e.tag: e for e in parsed.dataset.elements()}
    assert found[0x00081140].kind == KIND_SEQUENCE
    assert parsed.dataset.value(found[0x00081155]) == SOURCE_UID
    assert fastanon.anonymize(EXPLICIT_INSIDE_UN, policy={}) == EXPLICIT_INSIDE_UN
    out = pydicom.dcmread(io.BytesIO(fastanon.anonymize(EXPLICIT_INSIDE_UN, "research", key=b"k")))
    new = out.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert new.startswith("2.25.") and new != SOURCE_UID.rstrip(b"\0").decode()
    assert "PatientName" not in out or out.PatientName != "DOE^JOHN"


def test_a_un_value_of_a_sequence_tag_that_holds_no_items_stays_opaque():
    broken = _el(0x00081140, "UN", _item(b"\xff\xff\xff\xff"))   # an item of garbage
    raw = _file(_el(0x00080060, "CS", b"CT"), broken, _el(0x00100010, "PN", b"DOE^JOHN"))
    found = {e.tag: e for e in parse(raw).dataset.elements()}
    assert found[0x00081140].kind == KIND_ELEMENT and 0x00100010 in found
    assert fastanon.anonymize(raw, policy={}) == raw
    out = fastanon.anonymize(raw, policy={"PatientName": "remove"})
    assert b"DOE^JOHN" not in out and pydicom.dcmread(io.BytesIO(out), force=True).Modality == "CT"


def _deflated_file(body: bytes, wrap) -> bytes:
    syntax = _el(0x00020010, "UI", b"1.2.840.10008.1.2.1.99\0")
    meta = _el(0x00020000, "UL", struct.pack("<I", len(syntax))) + syntax
    return bytes(128) + b"DICM" + meta + wrap(body)


BODY = _el(0x00080060, "CS", b"CT") + _el(0x00100010, "PN", b"DOE^JOHN") + _el(0x00100020, "LO", b"ID42")


def _raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


@pytest.mark.parametrize("wrap", [_raw_deflate, zlib.compress, lambda body: body],
                         ids=["raw deflate", "zlib header", "not deflated"])
def test_deflated_transfer_syntax_variants_are_read(wrap):
    """PS3.5 §A.5 asks for raw deflate; some writers add a zlib header, some do not deflate."""
    raw = _deflated_file(BODY, wrap)
    found = {e.tag for e in parse(raw).dataset.elements()}
    assert {0x00080060, 0x00100010, 0x00100020} <= found
    assert fastanon.anonymize(raw, policy={}) == raw
    out = fastanon.anonymize(raw, policy={"PatientName": "remove"})
    assert b"DOE^JOHN" not in out
    assert pydicom.dcmread(io.BytesIO(out)).PatientID == "ID42"


def test_explicit_data_set_under_an_implicit_transfer_syntax_is_read_as_pydicom_does():
    syntax = _el(0x00020010, "UI", b"1.2.840.10008.1.2\0")          # Implicit VR Little Endian
    meta = _el(0x00020000, "UL", struct.pack("<I", len(syntax))) + syntax
    raw = bytes(128) + b"DICM" + meta + BODY                          # ...but explicit elements
    found = {e.tag: e for e in parse(raw).dataset.elements()}
    assert {0x00080060, 0x00100010, 0x00100020} <= set(found)
    assert pydicom.dcmread(io.BytesIO(raw)).PatientID == "ID42"
    out = fastanon.anonymize(raw, policy={"PatientName": "empty"})
    assert pydicom.dcmread(io.BytesIO(out)).PatientName == ""
