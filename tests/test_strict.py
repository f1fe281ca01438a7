"""Strict in what fastanon writes: structure that would hide data is refused, and every output is
scanned again and must be its input with the planned edits (confirm.py) before it is returned
or renamed into place."""

from __future__ import annotations

import io
import struct
import warnings

import pydicom
import pytest

import fastanon
from conftest import pydicom_reads_fully, read_bytes
from fastanon import _core, confirm
from fastanon.errors import FastanonError, MalformedError
from fastanon.pipeline import plan_of, prepare, render
from fastanon.scan import Limits, parse

KEY = "strict-test-key"


def element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element (short header)."""
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def item(body: bytes, length: int | None = None) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body) if length is None else length) + body


ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
NAME = element(0x00100010, b"PN", b"Doe^Hidden")


def sequence(body: bytes) -> bytes:
    """(0008,1115) ReferencedSeriesSequence, defined length."""
    return struct.pack("<HH2sxxI", 0x0008, 0x1115, b"SQ", len(body)) + body


def data_set(*elements: bytes) -> bytes:
    # (0008,0016) SOP Class UID first: a raw explicit VR little endian data set (no meta).
    return element(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0") + b"".join(elements)


def test_a_delimiter_inside_a_defined_length_item_with_data_after_it_is_refused():
    # The item says 30 bytes: an item delimiter, then a PatientName readers would not see.
    body = element(0x00200010, b"SH", b"S1") + ITEM_END + NAME
    raw = data_set(sequence(item(body)))
    with pytest.raises(MalformedError, match="delimiter inside a defined-length item"):
        parse(raw)
    with pytest.raises(FastanonError, match="bytes after it"):
        fastanon.anonymize(raw, "research")


def test_a_delimiter_ending_a_defined_length_item_is_read():
    raw = data_set(sequence(item(element(0x00200010, b"SH", b"S1") + ITEM_END)), NAME)
    out = pydicom.dcmread(io.BytesIO(fastanon.anonymize(raw, "research", key=KEY)), force=True)
    assert out.PatientName == ""


def test_a_sequence_delimiter_inside_a_defined_length_sequence_is_refused():
    body = item(element(0x00200010, b"SH", b"S1")) + SEQUENCE_END + item(NAME)
    with pytest.raises(MalformedError, match="delimiter inside a defined-length"):
        parse(data_set(sequence(body)))
    # At its very end it hides nothing: read, and kept.
    parse(data_set(sequence(item(element(0x00200010, b"SH", b"S1")) + SEQUENCE_END)))


def test_an_item_that_ends_inside_an_element_is_refused():
    body = element(0x00200010, b"SH", b"S1") + NAME
    with pytest.raises(MalformedError, match="runs past the end"):
        parse(data_set(sequence(item(body, length=len(body) - 4))))


def _prepared(name: str = "CT_small.dcm"):
    raw = read_bytes(name)
    output = prepare(parse(raw), plan_of("research", KEY))
    return output, render(output)[0]


def test_an_output_that_reads_back_as_planned_passes():
    output, out = _prepared()
    confirm.confirm(output, out, "CT_small.dcm")


@pytest.mark.parametrize("damage", ["value", "length", "dropped", "extra"])
def test_an_output_that_reads_back_otherwise_is_refused(damage):
    output, out = _prepared()
    again = parse(out)
    table = again.dataset.table
    new_values = [v for i, v in output.edits.items() if v]
    if damage == "value":       # a planned new value, one byte changed
        at = out.rfind(new_values[-1])
        out = out[:at] + bytes([out[at] ^ 1]) + out[at + 1:]
    elif damage == "length":    # an element kept, its length changed (StudyDescription's end)
        index = table.find(0x00280010, -1)            # Rows (US): becomes a 4-byte UL-sized
        row = table.row(index)
        out = out[:row[6] + 6] + b"\x04\x00" + out[row[7]:row[7] + 2] + b"\0\0" + out[row[9]:]
    elif damage == "dropped":   # an element the plan kept, gone
        row = table.row(table.find(0x00280010, -1))
        out = out[:row[6]] + out[row[9]:]
    else:                       # an element the plan did not add
        row = table.row(table.find(0x00280010, -1))
        out = out[:row[6]] + element(0x00280009, b"AT", b"\0\0\0\0") + out[row[6]:]
    with pytest.raises(FastanonError, match="would not read back"):
        confirm.confirm(output, out, "CT_small.dcm")


def test_a_refused_output_is_never_written(tmp_path, monkeypatch):
    """anonymize_file checks the written file before it is renamed: on a difference neither
    the output nor its temporary file is left."""
    src = tmp_path / "in.dcm"
    src.write_bytes(read_bytes("CT_small.dcm") + bytes(70000))     # > 64 KiB: mapped
    dst = tmp_path / "out" / "out.dcm"
    monkeypatch.setattr(_core, "expect", lambda *args: (0, 0))
    for source in (src, tmp_path / "small.dcm"):
        if source.name == "small.dcm":
            source.write_bytes(read_bytes("CT_small.dcm"))
        with pytest.raises(FastanonError, match="would not read back as planned"):
            fastanon.anonymize_file(source, dst, "research", key=KEY)
        assert not dst.exists()
        assert not any(dst.parent.iterdir()) if dst.parent.exists() else True


def test_every_preset_output_reads_back(tmp_path):
    """The check runs on each output (here twice over: in memory and written)."""
    for name in ("CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "rtplan.dcm",
                 "dicomdirtests/DICOMDIR", "JPEG2000.dcm"):
        raw = read_bytes(name)
        for preset in ("research", "internal"):
            out = fastanon.anonymize(raw, preset, key=KEY)
            assert fastanon.anonymize(out, {}) == out
            src = tmp_path / "in.dcm"
            src.write_bytes(raw)
            fastanon.anonymize_file(src, tmp_path / "out.dcm", preset, key=KEY)
            assert (tmp_path / "out.dcm").read_bytes() == out


# --- bounded work -----------------------------------------------------------------------------

def _meta(syntax: bytes) -> bytes:
    """Preamble, DICM and a file meta information group naming a transfer syntax."""
    syntax += b"\0" * (len(syntax) % 2)
    body = element(0x00020010, b"UI", syntax)
    return bytes(128) + b"DICM" + element(0x00020000, b"UL", struct.pack("<I", len(body))) + body


def test_zeros_to_the_end_of_a_file_are_padding():
    raw = _meta(b"1.2.840.10008.1.2.1") + data_set(NAME) + bytes(8 << 20)
    out = fastanon.anonymize(raw, "research", key=KEY)
    assert out.endswith(bytes(8 << 20)) and b"Doe^Hidden" not in out


def test_the_same_element_twice_in_a_row_is_refused():
    with pytest.raises(MalformedError, match="the same element again"):
        parse(data_set(NAME, NAME))


_CHILD = """
import resource, sys, zlib, struct, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import fastanon
sys.path.insert(0, {tests!r})
from test_strict import _meta, element, data_set
pair = element(0x00091010, b"LO", b"AB") + element(0x00091011, b"LO", b"CD")
for body in (bytes(64 << 20), pair * ((64 << 20) // len(pair))):
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = _meta(b"1.2.840.10008.1.2.1.99") + deflater.compress(data_set() + body) + deflater.flush()
    start = time.perf_counter()
    try:
        fastanon.anonymize(raw, "research")
        print("ok", len(raw), round(time.perf_counter() - start, 1))
    except fastanon.FastanonError as exc:
        print("refused", len(raw), str(exc)[:80])
"""


def test_a_deflate_bomb_stays_within_a_memory_limit():
    """64 MiB of zeros, or of two private elements repeated, in a deflated file of a few KB:
    refused or done within 1 GiB of address space (no MemoryError, no crash)."""
    import subprocess
    import sys
    from pathlib import Path

    code = _CHILD.format(tests=str(Path(__file__).parent))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.split("\n")
    assert len([line for line in lines if line.startswith(("ok", "refused"))]) == 2, run.stdout


def test_a_huge_identifying_value_is_not_searched_for():
    """A 4 MB PatientID (no ID is that long) does not become a search pattern (it once took
    inspect seconds to compile one): values past ECHO_MAX are not needles."""
    from fastanon.echoes import ECHO_MAX
    from fastanon.plan import FileContext

    big = b"P" * (4 << 20)
    raw = data_set(struct.pack("<HH2sxxI", 0x0010, 0x0020, b"UN", len(big)) + big,
                   element(0x00100010, b"PN", b"Doe^Jane"), element(0x00200010, b"SH", b"P" * 16))
    plan = plan_of("internal", KEY)
    parsed = parse(raw)
    identity = plan.echoes(FileContext.of(parsed.dataset)).identity
    assert identity.values and all(len(v) <= ECHO_MAX for v in identity.values)
    found = {f.keyword: f for f in fastanon.inspect(raw, "internal", key=KEY)}
    assert found["PatientName"].action == "hash"
    out = fastanon.anonymize(raw, "internal", key=KEY)
    assert b"Doe" not in out


def test_the_inflation_limits_are_options(tmp_path):
    """--max-inflated (MiB) bounds a deflated data set; the error names the options."""
    import zlib

    from test_cli import invoke

    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    big = struct.pack("<HH2sxxI", 0x0009, 0x1010, b"OB", 2 << 20) + bytes(2 << 20)
    body = data_set(element(0x00090010, b"LO", b"ACME"), big, NAME)
    raw = _meta(b"1.2.840.10008.1.2.1.99") + deflater.compress(body) + deflater.flush()
    src = tmp_path / "in.dcm"
    src.write_bytes(raw)
    result = invoke("run", "--max-inflated", "1", "--key", KEY, src, tmp_path / "out.dcm")
    assert result.exit_code == 1
    assert "inflates beyond 1,048,576 bytes" in result.stderr and "--max-inflated" in result.stderr
    assert not (tmp_path / "out.dcm").exists()
    result = invoke("run", "--key", KEY, src, tmp_path / "out.dcm")
    assert result.exit_code == 0, result.stderr
    with pytest.raises(FastanonError, match="inflates beyond"):
        fastanon.anonymize(raw, "research", limits=Limits(max_inflated=1 << 20))


def test_a_data_set_that_switches_encoding_is_written_in_one():
    """A data set whose first element is explicit VR and the rest implicit, under a transfer
    syntax that says implicit (pydicom reads it all as explicit, fastanon too, element by
    element): research writes every header explicit and the meta says Explicit VR Little
    Endian, so pydicom reads it without a warning; the new elements are explicit too."""
    def implicit(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value

    raw = (_meta(b"1.2.840.10008.1.2") + element(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0")
           + implicit(0x00080018, b"1.2.3.4\0") + implicit(0x00100010, b"Doe^John")
           + implicit(0x00200010, b"S1"))
    assert parse(raw).dataset.table.switched == 3
    out = fastanon.anonymize(raw, "research", key=KEY)
    again = parse(out)
    assert again.transfer_syntax == "1.2.840.10008.1.2.1" and not again.dataset.implicit
    assert again.dataset.table.switched == 0
    assert [again.dataset.element(i).vr for i in range(4)] == ["UI", "UI", "PN", "CS"]
    at = out.find(struct.pack("<HH", 0x0012, 0x0062))
    assert at > 0 and out[at + 4:at + 6] == b"CS"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == "" and ds.StudyID == ""
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert len(ds.DeidentificationMethodCodeSequence) == 1
    assert fastanon.anonymize(out, {}) == out
    # An exact mapping changes what it says and nothing else: the encodings stay as they are.
    exact = fastanon.anonymize(raw, {"PatientName": "empty"})
    assert parse(exact).dataset.table.switched == 3


def test_implicit_headers_inside_an_explicit_data_set_become_explicit():
    """Implicit VR elements at every depth of an explicit VR data set (a known sequence, a
    private one, an item's elements, an ambiguous VR, a long value, a group length): each
    gets an explicit header with the dictionary's VR (UN where it has none, several, or the
    length does not fit), the lengths around them follow, and pydicom reads the same values."""
    def implicit(tag: int, value: bytes) -> bytes:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value

    def item(body: bytes) -> bytes:
        return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body

    code = item(element(0x00080100, b"SH", b"121\0") + implicit(0x00080102, b"DCM ")
                + implicit(0x00080104, b"Spoken"))
    private = item(implicit(0x00091010, b"ABCD"))
    group = implicit(0x00280000, struct.pack("<I", 10))
    body = (element(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0")
            + implicit(0x00080018, b"1.2.3.4\0")
            + implicit(0x00081032, code)                      # ProcedureCodeSequence
            + element(0x00090010, b"LO", b"ACME 1.0")
            + implicit(0x00091001, private)                   # a private sequence of items
            + implicit(0x00100010, b"Doe^John")
            + element(0x00200013, b"IS", b"1 ")
            + group + implicit(0x00280106, b"\0\0")             # SmallestImagePixelValue: US or SS
            + implicit(0x00321060, b"x" * 70000))             # RequestedProcedureDescription
    raw = _meta(b"1.2.840.10008.1.2.1") + body
    parsed = parse(raw)
    assert parsed.dataset.table.switched == 9
    out = fastanon.anonymize(raw, "internal", key=KEY)
    again = parse(out)
    assert again.dataset.table.switched == 0
    vrs = {again.dataset.element(i).tag: again.dataset.table.row(i)[1]
           for i in range(len(again.dataset.table)) if again.dataset.table.row(i)[2] != 2}
    assert vrs[0x00080018] == "UI" and vrs[0x00081032] == "SQ" and vrs[0x00080102] == "SH"
    assert vrs[0x00280106] == "UN" and vrs[0x00321060] == "UN" and vrs[0x00280000] == "UL"
    ds = pydicom.dcmread(io.BytesIO(out))
    before = pydicom.dcmread(io.BytesIO(raw))
    assert ds.ProcedureCodeSequence[0].CodeMeaning == before.ProcedureCodeSequence[0].CodeMeaning
    assert ds[0x00321060].value == b"x" * 70000     # kept UN: an LO header cannot hold it
    assert ds.SmallestImagePixelValue == 0
    assert ds[0x00280000].value == before[0x00280000].value + 4    # its group grew by a header
    assert fastanon.anonymize(out, {}) == out
    # research edits inside the re-headered sequence and removes the private one.
    out = fastanon.anonymize(raw, "research", key=KEY)
    assert parse(out).dataset.table.switched == 0
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.PatientName == "" and 0x00091001 not in ds
    assert fastanon.anonymize(out, {}) == out


def test_a_meta_element_inside_the_data_set_is_never_joined_to_the_meta():
    """A group 0002 element after the data set's first element (a file meta cut short): once
    research removes that first element, the output would read it as part of the meta (here a
    Deflated transfer syntax over a plain data set). The re-read check refuses it; nothing else
    about the file is changed, and {} keeps it as it is."""
    raw = (_meta(b"1.2.840.10008.1.2.1") + element(0x00080021, b"DA", b"20240305")
           + element(0x00020010, b"UI", b"1.2.840.10008.1.2.1.99\0")
           + element(0x00080016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0") + NAME)
    assert fastanon.anonymize(raw, {}) == raw
    with pytest.raises(FastanonError, match="would not read back"):
        fastanon.anonymize(raw, "research", key=KEY)


def test_the_file_meta_is_written_whole():
    """A meta without its group length, with an implicit VR header and an element the data
    dictionary does not know: research writes it whole — group length first and right, every
    header explicit VR little endian, the unknown element left out (PS3.10 §7.1)."""
    implicit_uid = struct.pack("<HHI", 0x0002, 0x0003, 8) + b"1.2.3.4\0"
    meta = (bytes(128) + b"DICM" + element(0x00020002, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0")
            + implicit_uid + element(0x00020010, b"UI", b"1.2.840.10008.1.2.1\0")
            + element(0x00020099, b"LO", b"WHAT?!"))
    raw = meta + data_set(element(0x00080018, b"UI", b"1.2.3.4\0"), NAME)
    assert fastanon.anonymize(raw, {}) == raw
    out = fastanon.anonymize(raw, "research", key=KEY)
    again = parse(out)
    rows = again.meta.table.rows()
    # ... and the Type 1 elements it lacked: the version, fastanon as the implementation.
    assert [r[0] for r in rows] == [0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010,
                                    0x00020012]
    assert all(r[1] for r in rows)                      # every header has its VR
    length = struct.unpack("<I", again.meta.value(again.meta.element(0)))[0]
    assert length == again.dataset_start - rows[1][6]
    assert again.meta.value(again.meta.element(1)) == b"\0\1"
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != "1.2.3.4"


def test_non_ascii_bytes_in_ascii_values_pass_through():
    """Found by tools/fuzz.py (10⁶ cases): a byte above 0x7F in a DICOMDIR's Referenced File ID
    whose first component is the PatientID (so the echo cleaning rewrites it) raised
    UnicodeEncodeError. Such bytes now come back as they were (latin-1 both ways)."""
    raw = bytearray(read_bytes("dicomdirtests/DICOMDIR-implicit"))
    table = parse(bytes(raw)).dataset.table
    row = table.row(table.tags().index(0x00041500))      # b"77654033\\CR1\\6154 "
    assert bytes(raw[row[7]:row[7] + 8]) == b"77654033"
    raw[row[7] + 10] = 0xE9                              # "CR1" → "C\xe91"
    for preset in ("research", "internal"):
        out = fastanon.anonymize(bytes(raw), preset, key=KEY)
        assert b"\\C\xe91\\" in out and b"77654033" not in out
        assert fastanon.anonymize(out, {}) == out


def test_an_odd_length_meta_value_is_padded_when_the_meta_is_written_whole():
    """Found by tools/fuzz.py: a meta element of odd length (a Transfer Syntax UID of 19 bytes)
    made writing the meta whole fail without naming the file. It is padded (PS3.5 §7.1.1)."""
    syntax = element(0x00020010, b"UI", b"1.2.840.10008.1.2.1")        # 19 bytes
    meta = (bytes(128) + b"DICM" + element(0x00020000, b"UL", struct.pack("<I", len(syntax)))
            + syntax)
    raw = meta + data_set(element(0x00080018, b"UI", b"1.2.3.4\0"), NAME)
    out = fastanon.anonymize(raw, "research", key=KEY)
    again = parse(out)
    index = again.meta.table.find(0x00020010, -1)
    assert again.meta.value(again.meta.element(index)) == b"1.2.840.10008.1.2.1\0"
    assert pydicom.dcmread(io.BytesIO(out)).PatientName == ""


def test_items_under_a_tag_that_is_no_sequence_are_removed_not_given_dummy_content():
    """Found by tools/fuzz.py: InstanceCreationDate (DA, X/D) holding items behind an implicit
    VR header with undefined length (a mangled Source Image Sequence). Dummy content kept that
    header, which switches pydicom to implicit VR for the rest of the item; such an element is
    removed instead."""
    items = (struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
             + element(0x00081150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0")
             + ITEM_END + SEQUENCE_END)
    odd = struct.pack("<HHI", 0x0008, 0x0012, 0xFFFFFFFF) + items
    holder = struct.pack("<HH2sxxI", 0x0008, 0x1115, b"SQ", 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + odd + element(0x00200011, b"IS", b"1 ") + \
        ITEM_END + SEQUENCE_END
    raw = _meta(b"1.2.840.10008.1.2.1") + data_set(holder, NAME)
    out = fastanon.anonymize(raw, "research", key=KEY)
    assert pydicom_reads_fully(out)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert "InstanceCreationDate" not in ds.ReferencedSeriesSequence[0]
    assert ds.ReferencedSeriesSequence[0].SeriesNumber == 1
